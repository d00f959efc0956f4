"""Data hygiene: test-train near-duplicates, cross-label near-duplicates and label-noise
candidates, each an exact list computed by the engine.

Definitions (all distances exact, on the scale of :func:`sepcheck.separation`: the [0, 1]
pixel scale for uint8 data unless ``raw``, the data's own units otherwise; ties go to the
lowest index):

* **test-train near-duplicates**: every test point whose nearest training point *of any
  label* lies within ``tau`` (closed ball: distance <= tau). The nearest of any label is
  the minimum over the columns of :func:`sepcheck.nearest_by_class` (ties: the lowest
  training index). ``same_label`` says whether the two labels agree (a leak) or not (a
  leak with a label disagreement).
* **cross-label near-duplicates** (train-train): every pair i < j of training points with
  different labels at distance <= ``tau`` (:func:`sepcheck.engine.radius.neighbors_within`).
* **label-noise candidates**: for each training point x with label c,

  ``margin(x) = d(x, nearest point of another label) - d(x, nearest *other* point of label c)``

  (the second distance excludes x itself but counts an exact duplicate of x at 0; +inf
  when x is the only point of its class). A negative margin means x sits closer to
  another class than to its own; the more negative, the deeper inside the other class.
  Also ``knn_other``: how many of x's ``k`` nearest other points (any label, x itself
  excluded, ties to the lowest index) carry another label; ``all_other`` when all ``k`` do.
  The candidates are the points with ``margin < 0`` or ``all_other``, ranked by margin
  ascending (ties: lowest index). ``k=None`` skips the k-NN flag (one search fewer).

How: the nearest point of another label is the separation's nearest_other; the nearest
other point of the same label is, per class, :func:`sepcheck.nearest_other` over that
class's rows with one label per row (so only the row itself is excluded); the k nearest
points of any label are :func:`sepcheck.nearest_other` with one label per row.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SepcheckError
from ..core.fileio import atomic_write, to_jsonable
from ..core.norms import norm_name, parse_norm
from ..core.validation import (
    as_features,
    as_labels,
    check_positive_int,
    check_same_dim,
    check_two_classes,
    checked_once,
)
from ..engine import nearest_by_class, nearest_other
from ..engine.options import SearchOptions, call_options
from .certify import predicted_columns
from .separation import SeparationResult, separation, units_of


@dataclass
class HygieneTable:
    """A small typed table: named, equally long numpy columns (indices int64, labels int64,
    distances float64, flags bool), in row order.

    Attributes
    ----------
    name
        'test_train', 'cross_label' or 'label_noise'.
    columns
        Column name -> array of shape (m,).
    description
        One sentence: what a row is.
    """

    name: str
    columns: dict[str, np.ndarray]
    description: str = ""

    def __len__(self) -> int:
        return int(next(iter(self.columns.values())).shape[0]) if self.columns else 0

    def __getitem__(self, column: str) -> np.ndarray:
        return self.columns[column]

    def head(self, n: int) -> HygieneTable:
        """The first ``n`` rows (the closest ones: tables are sorted)."""
        return HygieneTable(self.name, {k: v[:n] for k, v in self.columns.items()}, self.description)

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per row with Python scalars."""
        cols = {k: v.tolist() for k, v in self.columns.items()}
        return [dict(zip(cols, row, strict=True)) for row in zip(*cols.values(), strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: name, description, number of rows and the rows."""
        return {"name": self.name, "description": self.description, "n": len(self), "rows": self.to_records()}

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the table as CSV (header line, one row per line), atomically."""
        import csv

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(list(self.columns))
                for rec in self.to_records():
                    w.writerow([_csv_cell(v) for v in rec.values()])

        return atomic_write(path, write, "CSV file")


def _csv_cell(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "nan")
    return v


@dataclass
class HygieneReport:
    """What :func:`hygiene` returns: three tables and the numbers behind them.

    Attributes
    ----------
    tau
        The near-duplicate radius (same units as the distances).
    test_train
        Test points with a training point of any label within tau (None without a test
        set): test_index, train_index, test_label, train_label, distance, same_label;
        sorted by distance, then test index.
    cross_label
        Training pairs i < j with different labels within tau: i, j, label_i, label_j,
        distance; sorted by distance, then i, then j.
    label_noise
        Candidates (margin < 0 or all k nearest of another label): index, label, margin,
        d_other, other_index, other_label, d_same, same_index, knn_other, all_other;
        sorted by margin, then index.
    test_nearest, test_nearest_index
        Per test point (n_test,): distance to and index of its nearest training point of
        any label (None without a test set): the fraction within any radius t is
        ``fraction_within(t)``.
    margin
        Per training point (n,): the margin defined in the module docstring.
    """

    tau: float
    norm: str
    units: str
    k: int | None
    n: int
    cross_label: HygieneTable
    label_noise: HygieneTable
    margin: np.ndarray
    test_train: HygieneTable | None = None
    test_nearest: np.ndarray | None = None
    test_nearest_index: np.ndarray | None = None
    dataset: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_test(self) -> int:
        return 0 if self.test_nearest is None else int(self.test_nearest.shape[0])

    def fraction_within(self, t: float) -> float | None:
        """Fraction of test points whose nearest training point (any label) is within ``t``."""
        if self.test_nearest is None or self.test_nearest.size == 0:
            return None
        return float(np.count_nonzero(self.test_nearest <= t) / self.test_nearest.size)

    def tables(self) -> dict[str, HygieneTable]:
        out = {"test_train": self.test_train, "cross_label": self.cross_label, "label_noise": self.label_noise}
        return {k: v for k, v in out.items() if v is not None}

    def summary(self) -> dict[str, Any]:
        """Headline numbers: counts per list and the test-train fraction within 1, 2 and 4 tau."""
        out: dict[str, Any] = {
            "dataset": self.dataset, "norm": self.norm, "units": self.units, "tau": self.tau, "k": self.k,
            "n": self.n, "cross_label_pairs": len(self.cross_label),
            "label_noise_candidates": len(self.label_noise),
            "negative_margin": int(np.count_nonzero(self.margin < 0)),
        }
        if self.test_train is not None:
            out["n_test"] = self.n_test
            out["test_train_duplicates"] = len(self.test_train)
            out["test_train_fraction"] = {f"{m:g}tau": self.fraction_within(m * self.tau) for m in (1, 2, 4)}
        return out

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """JSON-able: the summary and each table (its first ``top`` rows when given)."""
        out = self.summary()
        for name, table in self.tables().items():
            out[name] = (table if top is None else table.head(top)).to_dict()
        return to_jsonable(out)

    def to_csv(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``<folder>/<table name>.csv`` for each table."""
        return [t.to_csv(Path(folder) / f"{name}.csv") for name, t in self.tables().items()]


def check_tau(tau: Any) -> float:
    """A near-duplicate radius: a finite number >= 0."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.integer, np.floating)) or not (
        math.isfinite(float(tau)) and float(tau) >= 0
    ):
        raise SepcheckError(f"tau={tau!r} is invalid: give a finite radius >= 0 (on the distances' scale)")
    return float(tau)


def nearest_any(distances: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference row of any label from :func:`nearest_by_class`'s (n, C) output:
    (distance, index) per row, ties to the lowest reference index."""
    cols = predicted_columns(distances, indices)
    rows = np.arange(distances.shape[0])
    return distances[rows, cols], indices[rows, cols]


def nearest_other_label(
    distances: np.ndarray, indices: np.ndarray, classes: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference row with a label other than each query's ``labels`` (n,), from
    :func:`nearest_by_class`'s (n, C) output and its ``classes``: (distance, index) per
    row, ties to the lowest reference index, +inf and -1 where there is none (as
    :func:`nearest_other` with ``k=1``)."""
    pos = np.searchsorted(classes, labels)
    own = np.flatnonzero((pos < classes.size) & (classes[np.minimum(pos, classes.size - 1)] == labels))
    masked = distances.copy()
    masked[own, pos[own]] = np.inf
    d, i = nearest_any(masked, indices)
    return d, np.where(np.isinf(d), -1, i)


def test_train_table(
    nearest: np.ndarray, nearest_index: np.ndarray, y_test: np.ndarray, y: np.ndarray, tau: float
) -> HygieneTable:
    """The test points whose nearest training point of any label is within ``tau``."""
    q = np.flatnonzero(nearest <= tau)
    q = q[np.lexsort((q, nearest[q]))]
    j = nearest_index[q]
    return HygieneTable(
        "test_train",
        {
            "test_index": q.astype(np.int64), "train_index": j.astype(np.int64),
            "test_label": y_test[q], "train_label": y[j], "distance": nearest[q].astype(np.float64),
            "same_label": y_test[q] == y[j],
        },
        "a test point and its nearest training point of any label, within tau",
    )


def cross_label_table(X: np.ndarray, y: np.ndarray, tau: float, *, p: float,
                      options: SearchOptions) -> HygieneTable:
    """Training pairs i < j with different labels at distance <= tau (exact radius search)."""
    from ..engine.radius import neighbors_within

    nb = neighbors_within(X, y, tau, norm=p, other_label=True, options=options)
    rows, cols, dist = nb.pairs()
    keep = rows < cols
    i, j, d = rows[keep].astype(np.int64), cols[keep].astype(np.int64), dist[keep].astype(np.float64)
    order = np.lexsort((j, i, d))
    i, j, d = i[order], j[order], d[order]
    return HygieneTable(
        "cross_label",
        {"i": i, "j": j, "label_i": y[i], "label_j": y[j], "distance": d},
        "two training points with different labels within tau (i < j)",
    )


def own_class_nearest(X: np.ndarray, y: np.ndarray, *, p: float,
                      options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
    """Per row: distance to and index of the nearest *other* row of the same label (a
    duplicate counts at 0; +inf and -1 for a class of one row). Exact: per class,
    :func:`nearest_other` over that class's rows with one label per row."""
    dist = np.full(X.shape[0], np.inf)
    idx = np.full(X.shape[0], -1, dtype=np.int64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if members.size < 2:
            continue
        d, i = nearest_other(X[members], np.arange(members.size), norm=p, k=1, options=options)
        dist[members], idx[members] = d[:, 0], members[i[:, 0]]
    return dist, idx


def label_noise_table(
    X: np.ndarray, y: np.ndarray, *, p: float, k: int | None, result: SeparationResult,
    options: SearchOptions,
) -> tuple[HygieneTable, np.ndarray]:
    """(candidates table, margin per training point); see the module docstring. ``k=None``
    skips the k-nearest-neighbour flag (one search fewer: the candidates are then the
    points with a negative margin)."""
    n = X.shape[0]
    d_same, same_idx = own_class_nearest(X, y, p=p, options=options)
    d_other, other_idx = result.distances, result.neighbors
    margin = d_other - d_same
    flagged = margin < 0
    extra: dict[str, np.ndarray] = {}
    if k is not None:
        kk = min(k, n - 1)
        _, ki = nearest_other(X, np.arange(n), norm=p, k=kk, options=options)  # plain k-NN, self excluded
        knn_other = np.count_nonzero(y[ki] != y[:, None], axis=1).astype(np.int64)
        all_other = knn_other == kk
        flagged |= all_other
        extra = {"knn_other": knn_other, "all_other": all_other}
    cand = np.flatnonzero(flagged)
    cand = cand[np.lexsort((cand, margin[cand]))]
    what = "a training point closer to another class than to its own (margin < 0)"
    if k is not None:
        what += f" or whose {min(k, n - 1)} nearest points all carry another label"
    table = HygieneTable(
        "label_noise",
        {
            "index": cand.astype(np.int64), "label": y[cand], "margin": margin[cand],
            "d_other": d_other[cand], "other_index": other_idx[cand], "other_label": y[other_idx[cand]],
            "d_same": d_same[cand], "same_index": same_idx[cand], **{c: v[cand] for c, v in extra.items()},
        },
        what,
    )
    return table, margin


@checked_once
def hygiene(
    X: Any,
    y: Any,
    X_test: Any = None,
    y_test: Any = None,
    *,
    tau: float,
    norm: str | float = "linf",
    raw: bool = False,
    k: int | None = 5,
    dataset: str = "",
    result: SeparationResult | None = None,
    options: SearchOptions | None = None,
    **engine_options: Any,
) -> HygieneReport:
    """Exact data-hygiene lists of a labelled data set (definitions in the module docstring).

    Parameters
    ----------
    X, y
        Training features (n, ...) (images are flattened) and n integer labels (two classes
        at least).
    X_test, y_test
        Optional test split: gives the test-train near-duplicates.
    tau
        Near-duplicate radius >= 0, on the distances' scale ([0, 1] pixel scale for uint8
        data unless ``raw``). Closed: a pair at exactly tau counts.
    norm
        'linf', 'l2', 'l1' or a float p >= 1.
    k
        Neighbours for the "all k nearest carry another label" flag (default 5; None
        skips it, and its k-nearest-neighbour search).
    result
        The training data's :class:`~sepcheck.SeparationResult` for the same norm and
        units, when known (saves one search).
    options, engine_options
        How the searches run: a validated :class:`~sepcheck.engine.options.SearchOptions`,
        or backend, device, block_size, memory_budget, progress (see
        :func:`sepcheck.nearest_other`).

    Returns
    -------
    HygieneReport
    """
    t = check_tau(tau)
    kk = None if k is None else check_positive_int(k, "k")
    p = parse_norm(norm)
    Xf = as_features(X, "X")
    yv = as_labels(y, Xf.shape[0], "y", "X")
    check_two_classes(yv)
    if (X_test is None) != (y_test is None):
        raise SepcheckError("X_test and y_test go together: pass both or neither")
    engine_options.pop("info", None)
    opts = call_options(options, raw, **engine_options)
    raw = opts.raw
    if result is None:
        result = separation(Xf, yv, norm=p, raw=raw, options=opts)
    elif result.n != Xf.shape[0] or result.norm != norm_name(p) or result.units != units_of(Xf, raw):
        raise SepcheckError("result= is not this data's separation for this norm and units: pass the matching one")
    noise, margin = label_noise_table(Xf, yv, p=p, k=kk, result=result, options=opts)
    rep = HygieneReport(
        tau=t, norm=norm_name(p), units=units_of(Xf, raw), k=kk, n=int(Xf.shape[0]),
        cross_label=cross_label_table(Xf, yv, t, p=p, options=opts),
        label_noise=noise, margin=margin, dataset=dataset,
    )
    if X_test is not None:
        Xt = as_features(X_test, "X_test")
        yt = as_labels(y_test, Xt.shape[0], "y_test", "X_test")
        check_same_dim(Xf, Xt)
        d, i, _ = nearest_by_class(Xf, yv, Xt, norm=p, options=opts)
        rep.test_nearest, rep.test_nearest_index = nearest_any(d, i)
        rep.test_train = test_train_table(rep.test_nearest, rep.test_nearest_index, yt, yv, t)
    return rep


__all__ = ["HygieneReport", "HygieneTable", "check_tau", "hygiene", "nearest_any", "nearest_other_label",
           "own_class_nearest"]
