"""The robust-accuracy ceiling of a labelled sample: the best robust accuracy any deterministic
classifier can reach on it at radius eps.

Two points with different labels at distance <= 2 eps cannot both be classified correctly and
robustly (their closed eps-balls meet); a set of points without such a pair can (give each ball
its label). So the ceiling is the maximum independent set of the *conflict graph* (vertices:
points; edges: different-label pairs at distance <= 2 eps) divided by n (Bhagoji et al. 2019,
Pydi & Jog 2020).

The graph is solved per connected component: isolated points are free; a component whose
points carry two labels is bipartite and exact through a maximum matching (Konig: maximum
independent set = size - matching; a minimum vertex cover, the sacrificed points, is recovered
from the matching); a component with three or more labels is an integer program (maximise
sum x subject to x_u + x_v <= 1 per edge) solved exactly by HiGHS (``scipy.optimize.milp``)
within ``time_limit`` seconds, after which the ceiling is bounded by HiGHS's MIP dual bound
(above) and the better of HiGHS's incumbent and a min-degree greedy independent set (below).
That solver is :mod:`.ceiling_graph`; this module finds the conflict pairs, one exact radius
search for the whole grid of radii, and holds the result type.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._version import __version__
from ..core.errors import SepcheckError
from ..core.fileio import atomic_write, json_text, read_json_object
from ..core.hashing import array_digest
from ..core.norms import norm_name, parse_norm
from ..core.validation import as_features, as_labels, check_two_classes, checked_once
from ..engine.problem import units_of
from .ceiling_graph import METHODS, solve_conflict_graph

FORMAT = "sepcheck.ceiling/1"


@dataclass
class CeilingResult:
    """Result of :func:`robust_ceiling`: one value per eps (the order given).

    Attributes
    ----------
    eps : ndarray, shape (E,)
        Attack radii on the scale of :func:`~sepcheck.separation` (uint8 data: pixels / 255
        unless ``raw``).
    accuracy : ndarray, shape (E,)
        Maximum robust accuracy of any deterministic classifier on the sample, where ``exact``;
        elsewhere a lower bound (greedy or HiGHS incumbent).
    upper : ndarray, shape (E,)
        Upper bound of the ceiling (equal to ``accuracy`` where exact; HiGHS's MIP dual bound
        for the components that hit the time limit).
    exact : ndarray of bool, shape (E,)
    n_edges : ndarray of int64, shape (E,)
        Conflict edges (unordered different-label pairs at distance <= 2 eps).
    n_components : ndarray of int64, shape (E,)
        Connected components with at least one edge.
    n_points : int
    class_share : float
        Fraction of the largest class: the ceiling once every pair conflicts.
    sacrificed : list of ndarray of int64
        Per eps, the sorted indices of the points one optimal (or, where inexact, the
        best found) solution gives up.
    details : list of dict
        Per eps: components per method, points in the largest component, seconds.
    """

    eps: np.ndarray
    accuracy: np.ndarray
    upper: np.ndarray
    exact: np.ndarray
    n_edges: np.ndarray
    n_components: np.ndarray
    n_points: int
    class_share: float
    sacrificed: list[np.ndarray]
    details: list[dict[str, Any]]
    norm: str = "linf"
    units: str = "pixel"
    dataset: str = ""
    content_hash: str = ""
    time_limit: float = 10.0
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, sacrificed: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict (``sacrificed=False`` leaves the index lists out)."""
        out: dict[str, Any] = {
            "format": FORMAT, "dataset": self.dataset, "norm": self.norm, "units": self.units,
            "n_points": int(self.n_points), "class_share": float(self.class_share),
            "time_limit": float(self.time_limit), "content_hash": self.content_hash, "version": self.version,
            "eps": self.eps.tolist(), "accuracy": self.accuracy.tolist(), "upper": self.upper.tolist(),
            "exact": [bool(v) for v in self.exact], "n_edges": self.n_edges.tolist(),
            "n_components": self.n_components.tolist(), "details": self.details, "extra": self.extra,
        }
        if sacrificed:
            out["sacrificed"] = [s.tolist() for s in self.sacrificed]
        return out

    def to_json(self, sacrificed: bool = True) -> str:
        return json_text(self.to_dict(sacrificed=sacrificed))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CeilingResult:
        """Inverse of :meth:`to_dict` (with the sacrificed lists)."""
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}")
            return cls(
                eps=np.asarray(d["eps"], dtype=np.float64), accuracy=np.asarray(d["accuracy"], dtype=np.float64),
                upper=np.asarray(d["upper"], dtype=np.float64), exact=np.asarray(d["exact"], dtype=bool),
                n_edges=np.asarray(d["n_edges"], dtype=np.int64),
                n_components=np.asarray(d["n_components"], dtype=np.int64),
                n_points=int(d["n_points"]), class_share=float(d["class_share"]),
                sacrificed=[np.asarray(s, dtype=np.int64) for s in d["sacrificed"]],
                details=list(d["details"]), norm=str(d["norm"]), units=str(d["units"]),
                dataset=str(d.get("dataset", "")), content_hash=str(d.get("content_hash", "")),
                time_limit=float(d.get("time_limit", math.nan)), version=str(d.get("version", "")),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SepcheckError(f"not a sepcheck ceiling result ({exc})") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON (with the sacrificed points), atomically."""
        text = self.to_json()
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> CeilingResult:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(read_json_object(path, "ceiling result"))

    def at(self, eps: float) -> int:
        """Index of ``eps`` in :attr:`eps` (exact match), or a SepcheckError."""
        hit = np.flatnonzero(self.eps == float(eps))
        if hit.size == 0:
            raise SepcheckError(f"eps={eps!r} is not in this result's grid {self.eps.tolist()}")
        return int(hit[0])

    def plot(self, ax: Any = None, *, typical_eps: float | None = None, runs: Any = None, **kwargs: Any) -> Any:
        """The ceiling curve (see :func:`sepcheck.analysis.plots.plot_ceiling`)."""
        from .plots import plot_ceiling

        return plot_ceiling(self, ax=ax, typical_eps=typical_eps, runs=runs, **kwargs)


def as_eps_grid(eps: Any, name: str = "eps") -> np.ndarray:
    """A float or 1-D array of radii (finite, >= 0, at least one) as float64, order kept;
    ``name`` names them in the error about a radius that is not finite or negative (the CLI:
    ``--eps``)."""
    try:
        arr = np.asarray(eps, dtype=np.float64)
    except (TypeError, ValueError):
        raise SepcheckError(f"eps={eps!r} is invalid: give a radius >= 0 or a 1-D array of them") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise SepcheckError(f"eps has shape {arr.shape}: give a radius >= 0 or a non-empty 1-D array of them")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise SepcheckError(f"{name} {float(arr[bad][0])!r} is invalid: every radius must be finite and >= 0")
    return arr


def check_time_limit(time_limit: Any) -> float:
    """Seconds per integer program: a number > 0 (inf: no limit)."""
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float, np.integer, np.floating)) \
            or not time_limit > 0:
        raise SepcheckError(f"time_limit={time_limit!r} is invalid: give the seconds per component, > 0")
    return float(time_limit)


def ceiling_inputs(X: Any, y: Any, eps: Any, time_limit: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Validated (features (n, d), labels (n,), eps grid (E,), time limit) of a ceiling: at
    least two classes, radii finite and >= 0, a time limit > 0."""
    Xf = as_features(X, "X")
    yv = as_labels(y, Xf.shape[0], "y", "X")
    grid = as_eps_grid(eps)
    limit = check_time_limit(time_limit)
    check_two_classes(yv, "y", what="the robust-accuracy ceiling")
    return Xf, yv, grid, limit


@checked_once
def robust_ceiling(
    X: Any,
    y: Any,
    eps: Any,
    *,
    norm: str | float = "linf",
    raw: bool = False,
    time_limit: float = 10.0,
    backend: str = "auto",
    device: str = "auto",
    memory_budget: Any = None,
    progress: bool = False,
    dataset: str = "",
    nearest_distances: Any = None,
    content_hash: str | None = None,
) -> CeilingResult:
    """Maximum robust accuracy of any deterministic classifier on the sample ``(X, y)`` at each
    radius in ``eps`` (module docstring).

    Parameters
    ----------
    X : array, shape (n, ...)
    y : array of int, shape (n,)
    eps : float or array, shape (E,)
        Radii >= 0 on the scale of :func:`~sepcheck.separation` (uint8: /255 unless ``raw``).
    norm : 'linf', 'l2', 'l1' or p >= 1
    time_limit : float
        Seconds HiGHS may spend on one component with three or more labels.
    backend, device, memory_budget, progress
        For the exact searches (:func:`~sepcheck.nearest_other`, then one
        :func:`~sepcheck.engine.radius.neighbors_within` at 2 max(eps); each eps then
        filters its pairs).
    nearest_distances : array, shape (n,), optional
        Each point's distance to the nearest differently labelled point
        (:attr:`SeparationResult.distances <sepcheck.SeparationResult>` of the same data,
        norm and units), to skip that search. Only the points within 2 max(eps) of another
        label can conflict: the radius search runs on them alone.
    content_hash : str, optional
        :func:`sepcheck.core.hashing.array_digest` of ``(X, y)`` when the caller has it already
        (:func:`sepcheck.runs.cache.cached_ceiling`).

    Returns
    -------
    CeilingResult

    Notes
    -----
    Radii with 2 eps beyond a bound of the diameter (the norm of the per-feature ranges)
    make every different-label pair conflict: their ceiling is the largest class share,
    without a search.
    """
    p = parse_norm(norm)
    Xf, yv, grid, limit = ceiling_inputs(X, y, eps, time_limit)
    n = int(Xf.shape[0])
    _, yidx = np.unique(yv, return_inverse=True)
    yidx = yidx.astype(np.int64)
    sizes = np.bincount(yidx)
    whole = 2.0 * grid >= _diameter_bound(Xf, p, raw)  # complete multipartite graphs
    rmax = float(2.0 * grid[~whole].max()) if (~whole).any() else None
    engine = {"backend": backend, "device": device, "memory_budget": memory_budget, "progress": progress}
    search = _conflict_search(Xf, yv, p, raw, rmax, nearest_distances, engine)
    graphs = [_graph_at(float(e), bool(full), yidx, sizes, search, limit)
              for e, full in zip(grid, whole, strict=True)]
    return CeilingResult(
        eps=grid, accuracy=np.array([g["lower"] / n for g in graphs]),
        upper=np.array([g["upper"] / n for g in graphs]),
        exact=np.array([g["exact"] for g in graphs], dtype=bool),
        n_edges=np.array([g["n_edges"] for g in graphs], dtype=np.int64),
        n_components=np.array([g["n_components"] for g in graphs], dtype=np.int64), n_points=n,
        class_share=float(sizes.max() / n), sacrificed=[g["sacrificed"] for g in graphs],
        details=[g["details"] for g in graphs], norm=norm_name(p), units=units_of(Xf, raw),
        dataset=dataset, content_hash=content_hash or array_digest(Xf, yv), time_limit=limit,
        extra={"nearest_seconds": search.nearest_s, "radius_seconds": search.radius_s, "search_radius": rmax,
               "searched_points": int(search.close.size), "pairs": 0 if search.nb is None else int(search.nb.nnz)},
    )


class _Search(NamedTuple):
    """The exact searches of :func:`robust_ceiling`: every different-label pair within the
    largest radius searched (``nb``, over the rows ``close``; None: no pair), and their seconds."""

    nb: Any
    close: np.ndarray
    nearest_s: float
    radius_s: float


def _conflict_search(Xf: np.ndarray, yv: np.ndarray, p: float, raw: bool, rmax: float | None,
                     nearest_distances: Any, engine: dict[str, Any]) -> _Search:
    """Each point's nearest other label (or ``nearest_distances``), then one radius search at
    ``rmax`` among the points that close to another label (``rmax`` None: no search)."""
    from ..engine import nearest_other
    from ..engine.radius import neighbors_within

    if rmax is None:
        return _Search(None, np.empty(0, np.int64), 0.0, 0.0)
    n = int(Xf.shape[0])
    t0 = time.perf_counter()
    if nearest_distances is None:
        d1 = nearest_other(Xf, yv, norm=p, k=1, raw=raw, **engine)[0][:, 0]
    else:
        d1 = np.asarray(nearest_distances, dtype=np.float64).reshape(-1)
        if d1.shape != (n,) or np.isnan(d1).any() or (d1 < 0).any():
            raise SepcheckError(f"nearest_distances has shape {d1.shape} or holds NaN or negative values: "
                                f"give the {n} distances of SeparationResult.distances")
    close = np.flatnonzero(d1 <= rmax)  # only they can conflict at any eps of the grid
    t1 = time.perf_counter()
    nb = None
    if close.size >= 2 and np.unique(yv[close]).size >= 2:
        nb = neighbors_within(Xf[close], yv[close], rmax, norm=p, other_label=True, raw=raw, **engine)
    return _Search(nb, close, t1 - t0, time.perf_counter() - t1)


def _graph_at(e: float, full: bool, yidx: np.ndarray, sizes: np.ndarray, search: _Search,
              limit: float) -> dict[str, Any]:
    """:func:`~.ceiling_graph.solve_conflict_graph`'s result at radius ``e`` (``full``: 2 e is
    beyond the diameter, every different-label pair conflicts), with its seconds in ``details``."""
    t1 = time.perf_counter()
    n = int(yidx.size)
    if full:
        big = int(np.argmax(sizes))
        cross = (n * n - int((sizes.astype(np.int64) ** 2).sum())) // 2
        g = {"lower": int(sizes[big]), "upper": int(sizes[big]), "exact": True, "n_edges": cross,
             "n_components": 1, "sacrificed": np.flatnonzero(yidx != big).astype(np.int64),
             "details": {"components": dict.fromkeys(METHODS, 0), "largest_component": n, "bounds": "exact",
                         "shortcut": "2 eps beyond the diameter: every different-label pair conflicts"}}
    elif search.nb is None:
        g = solve_conflict_graph(n, yidx, np.empty(0, np.int64), np.empty(0, np.int64), limit)
    else:
        r, c, _ = search.nb.within(2.0 * e).pairs()
        keep = r < c
        g = solve_conflict_graph(n, yidx, search.close[r[keep]], search.close[c[keep]], limit)
    g["details"]["seconds"] = time.perf_counter() - t1
    return g

def _diameter_bound(X: np.ndarray, p: float, raw: bool) -> float:
    """An upper bound of every distance in ``X`` (reported units), with a margin for the
    rounding of computed distances (none for uint8 linf, whose distances are exact)."""
    rng = X.max(axis=0).astype(np.float64) - X.min(axis=0).astype(np.float64)
    scale = 255.0 if X.dtype == np.uint8 and not raw else 1.0
    if math.isinf(p):
        bound = float(rng.max()) / scale
        return bound if X.dtype == np.uint8 else bound * (1 + 1e-9)
    return float(np.sum(rng**p) ** (1.0 / p)) / scale * (1 + 1e-9)


__all__ = ["CeilingResult", "robust_ceiling", "solve_conflict_graph", "as_eps_grid", "check_time_limit", "METHODS"]
