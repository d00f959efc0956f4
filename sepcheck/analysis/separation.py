"""Separation of a labelled data set: per-point distance to the nearest differently labelled
point, its minimum, r = separation / 2, quantiles, conflicts, histograms and plots.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..core.errors import SepcheckError
from ..core.hashing import array_digest
from ..core.norms import norm_name, parse_norm
from ..core.validation import as_features, as_labels, check_same_dim, checked_once
from ..engine import nearest_other
from ..engine.options import SearchOptions, call_options
from ..engine.problem import units_of
from ..engine.sources import is_source, open_source
from .conflicts import find_conflicts
from .results_io import read_result, save_result


@dataclass
class SeparationResult:
    """Result of :func:`separation`. Distances are on the [0, 1] pixel scale for uint8 data
    (unless computed with ``raw=True``), in the data's own units otherwise.

    Attributes
    ----------
    distances, neighbors
        Per training point: distance to and index of the nearest differently labelled
        training point (ties: lowest index).
    test_distances, test_neighbors
        Per test point: distance to and index of the nearest differently labelled
        *training* point (None without a test set).
    conflicts, test_conflicts
        (m, 2) index pairs at distance 0 with different labels (train-train pairs i < j;
        test-train pairs (test index, train index)).
    """

    norm: str
    distances: np.ndarray
    neighbors: np.ndarray
    test_distances: np.ndarray | None = None
    test_neighbors: np.ndarray | None = None
    conflicts: np.ndarray = field(default_factory=lambda: np.empty((0, 2), dtype=np.int64))
    test_conflicts: np.ndarray | None = None
    dataset: str = ""
    n_classes: int = 0
    dim: int = 0
    units: str = "pixel"
    content_hash: str = ""
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    # ----- summary numbers -------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.distances.shape[0])

    @property
    def n_test(self) -> int:
        return 0 if self.test_distances is None else int(self.test_distances.shape[0])

    @property
    def separation(self) -> float:
        """Minimum over training points of the distance to another label."""
        return float(np.min(self.distances))

    @property
    def r(self) -> float:
        """Half the separation: the data is 2r-separated."""
        return self.separation / 2.0

    @property
    def test_separation(self) -> float | None:
        """Minimum over test points of the distance to a differently labelled training point."""
        return None if self.test_distances is None else float(np.min(self.test_distances))

    def quantiles(self, qs: Any = (0.0, 0.01, 0.1, 0.5, 0.9, 1.0), test: bool = False) -> np.ndarray:
        """Quantiles of the per-point distances (train, or test with ``test=True``); ``qs``
        are fractions in [0, 1]."""
        try:
            q = np.asarray(qs, dtype=np.float64)
        except (TypeError, ValueError):
            q = np.array([np.nan])
        if not (np.isfinite(q).all() and ((q >= 0) & (q <= 1)).all()):
            raise SepcheckError(
                f"quantiles {qs!r} are invalid: give fractions from 0 to 1 (0.5 is the median)"
            )
        return np.quantile(self._dist(test), q)

    def closest(self, drop: int) -> np.ndarray:
        """Indices (sorted) of the ``drop`` training points with the smallest distance to another
        label (ties: lowest index): the points :func:`separation_after_drop` removes."""
        if not isinstance(drop, (int, np.integer)) or drop < 0 or drop >= self.n:
            raise SepcheckError(f"drop={drop!r} is invalid: give an integer from 0 to {self.n - 1}")
        return np.sort(np.argsort(self.distances, kind="stable")[: int(drop)])

    def robust_separation(self, drop: int = 0, test: bool = False) -> float:
        """The ``drop``-th smallest per-point distance: the minimum over the points left after
        dropping the ``drop`` closest, each still measured against *all* training points
        (a lower bound of :func:`separation_after_drop`, which recomputes without them)."""
        d = self._dist(test)
        if not isinstance(drop, (int, np.integer)) or drop < 0 or drop >= d.size:
            raise SepcheckError(f"drop={drop!r} is invalid: give an integer from 0 to {d.size - 1}")
        return float(np.partition(d, int(drop))[int(drop)])

    def histogram(
        self, bins: int | np.ndarray = 50, range: tuple[float, float] | None = None, test: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised histogram: (fractions summing to 1 over points inside ``range``, bin edges)."""
        d = self._dist(test)
        if isinstance(bins, (bool, np.bool_)) or (
            isinstance(bins, (int, np.integer)) and bins < 1
        ):
            raise SepcheckError(f"bins={bins!r} is invalid: give a number of bins >= 1 or bin edges")
        try:
            counts, edges = np.histogram(d, bins=bins, range=range)
        except (TypeError, ValueError) as exc:
            raise SepcheckError(
                f"histogram(bins={bins!r}, range={range!r}) is invalid "
                f"({str(exc).splitlines()[0]}): give bins >= 1 or increasing edges, and "
                "range=(low, high) with low < high"
            ) from None
        total = counts.sum()
        return (counts / total if total else counts.astype(float)), edges

    def plot(self, ax: Any = None, eps: float | None = None, test: bool = False, bins: int = 50) -> Any:
        """Matplotlib histogram like the paper's figures: dashed lines at the minimum and 2 eps."""
        from .plots import plot_separation

        return plot_separation(self, ax=ax, eps=eps, test=test, bins=bins)

    def _dist(self, test: bool) -> np.ndarray:
        if test:
            if self.test_distances is None:
                raise SepcheckError("this result has no test set: compute it with X_test and y_test")
            return self.test_distances
        return self.distances

    def summary(self, qs: tuple[float, ...] = (0.01, 0.1, 0.5)) -> dict[str, Any]:
        """Plain dict of the headline numbers (what `sepcheck separation --json` prints)."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "norm": self.norm,
            "units": self.units,
            "n": self.n,
            "n_classes": self.n_classes,
            "dim": self.dim,
            "separation": self.separation,
            "r": self.r,
            "quantiles": {str(q): float(v) for q, v in zip(qs, self.quantiles(qs), strict=False)},
            "conflicts": int(self.conflicts.shape[0]),
            "conflict_points": int(np.count_nonzero(self.distances == 0)),
        }
        if self.test_distances is not None:
            out["n_test"] = self.n_test
            out["test_separation"] = self.test_separation
            out["test_quantiles"] = {str(q): float(v) for q, v in zip(qs, self.quantiles(qs, test=True), strict=False)}
            out["test_conflicts"] = int(0 if self.test_conflicts is None else self.test_conflicts.shape[0])
            out["test_conflict_points"] = int(np.count_nonzero(self.test_distances == 0))
        return out

    # ----- persistence -----------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write to HDF5 atomically (a temporary file renamed into place)."""
        return save_result(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SeparationResult:
        """Read a file written by :meth:`save`."""
        return cls(**read_result(path))


@checked_once
def separation(
    X: Any,
    y: Any,
    X_test: Any = None,
    y_test: Any = None,
    *,
    norm: str | float = "linf",
    dataset: str = "",
    raw: bool = False,
    content_hash: str | None = None,
    options: SearchOptions | None = None,
    info: dict | None = None,
    **engine_options: Any,
) -> SeparationResult:
    """Train-train (and test-train) nearest-different-label distances of a data set.

    ``engine_options`` (backend, device, block_size, memory_budget, progress) or ``options``
    (a :class:`~sepcheck.engine.options.SearchOptions`, validated once by the caller) say how
    :func:`sepcheck.nearest_other` runs; ``info`` receives what it reports (backend, device). uint8 distances are divided by 255 unless ``raw``.
    ``content_hash``: :func:`sepcheck.core.hashing.array_digest` of ``(X, y, X_test, y_test)``
    when the caller has it already (:func:`sepcheck.runs.cache.cached_separation`), so that data
    streamed from disk is not read once more to hash it.

    ``X`` and ``X_test`` may be row sources or files (a ``.npy`` path, ``"file.h5:X"``, an
    ``h5py.Dataset``; see :func:`sepcheck.open_source`): the search then streams them from
    disk within ``memory_budget`` (data blocks included), with the same result.
    """
    p = parse_norm(norm)
    opts = call_options(options, raw, **engine_options)
    raw = opts.raw
    Xf, yv, Xt, yt = validated_inputs(X, y, X_test, y_test)
    dist, nbr = nearest_other(Xf, yv, norm=p, k=1, options=opts, info=info)
    res = SeparationResult(
        norm=norm_name(p),
        distances=dist[:, 0],
        neighbors=nbr[:, 0],
        dataset=dataset,
        n_classes=int(np.unique(yv).size),
        dim=int(Xf.shape[1]),
        units=units_of(Xf, raw),
        content_hash=content_hash or array_digest(Xf, yv, Xt, yt),
    )
    res.conflicts = find_conflicts(Xf, yv, np.flatnonzero(res.distances == 0))
    if Xt is not None:
        td, tn = nearest_other(Xf, yv, Xt, yt, norm=p, k=1, options=opts, info=info)
        res.test_distances, res.test_neighbors = td[:, 0], tn[:, 0]
        res.test_conflicts = find_conflicts(Xf, yv, np.flatnonzero(res.test_distances == 0), Xt, yt)
    return res


def validated_inputs(X: Any, y: Any, X_test: Any = None, y_test: Any = None) -> tuple[Any, np.ndarray, Any, Any]:
    """(X, y, X_test, y_test) checked: features as 2-D arrays (:func:`as_features`), or as
    row sources when either is a source or a file (then both are, and stream), int64 labels."""
    if (X_test is None) != (y_test is None):
        raise SepcheckError("X_test and y_test go together: pass both or neither")
    if is_source(X) or (X_test is not None and is_source(X_test)):
        Xf = open_source(X, "X")
        Xt = open_source(X_test, "X_test") if X_test is not None else None
    else:
        Xf = as_features(X, "X")
        Xt = as_features(X_test, "X_test") if X_test is not None else None
    yv = as_labels(y, Xf.shape[0], "y", "X")
    yt = None
    if Xt is not None:
        yt = as_labels(y_test, Xt.shape[0], "y_test", "X_test")
        check_same_dim(Xf, Xt)
    return Xf, yv, Xt, yt


@checked_once
def separation_after_drop(X: Any, y: Any, drop: int, *, norm: str | float = "linf", raw: bool = False,
                          result: SeparationResult | None = None, options: SearchOptions | None = None,
                          info: dict | None = None, **engine_options: Any) -> tuple[SeparationResult, np.ndarray]:
    """The paper's convention for SVHN (drop 4) and Restricted ImageNet (drop 6): remove the
    ``drop`` training points closest to another label (smallest nearest-other distance, ties
    to the lowest index; :meth:`SeparationResult.closest`) and compute the separation of the
    remaining points among themselves, exactly.

    Returns ``(result on the kept points, dropped indices into X)``; the kept points' indices
    are ``np.delete(np.arange(n), dropped)``. ``result``: the full data's result, if known
    (same norm and units). Only the kept points whose nearest other-label point was dropped
    are searched again.
    """
    if is_source(X):  # the kept rows are searched again: read them into memory
        src = open_source(X, "X")
        X = src.read(0, len(src))
    Xf = as_features(X, "X")
    yv = as_labels(y, Xf.shape[0], "y", "X")
    opts = call_options(options, raw, **engine_options)
    raw = opts.raw
    full = result if result is not None else separation(Xf, yv, norm=norm, raw=raw, options=opts, info=info)
    dropped = full.closest(drop)
    if dropped.size == 0:
        return full, dropped
    keep = np.ones(Xf.shape[0], dtype=bool)
    keep[dropped] = False
    Xk, yk = Xf[keep], yv[keep]
    if np.unique(yk).size < 2:
        raise SepcheckError(f"dropping {drop} points leaves a single class: drop fewer")
    # exact shortcut: a kept point whose nearest other-label point (lowest index on ties) is
    # kept has the same nearest point among the kept ones; only the others are searched again
    position = np.cumsum(keep) - 1
    dist, nbr = full.distances[keep].copy(), position[full.neighbors[keep]]
    again = np.flatnonzero(~keep[full.neighbors[keep]])
    if again.size:
        p = parse_norm(norm)
        d, i = nearest_other(Xk, yk, Xk[again], yk[again], norm=p, k=1, options=opts, info=info)
        dist[again], nbr[again] = d[:, 0], i[:, 0]
    res = SeparationResult(
        norm=full.norm, distances=dist, neighbors=nbr, dataset=full.dataset, n_classes=int(np.unique(yk).size),
        dim=int(Xk.shape[1]), units=full.units, content_hash=array_digest(Xk, yk),
    )
    res.conflicts = find_conflicts(Xk, yk, np.flatnonzero(dist == 0))
    return res, dropped


def ratio_to_eps(sep: float, eps: float | None) -> float | None:
    """separation / (2 eps): above 1 the data is separated enough for robustness at eps."""
    if eps is None or eps <= 0 or math.isnan(sep):
        return None
    return sep / (2.0 * eps)
