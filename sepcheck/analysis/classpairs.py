"""The class-pair separation matrix: the minimum distance between every two classes and the
pair of points that attains it ("which classes are close?").

One exact :func:`~sepcheck.engine.nearest_by_class` search of the data against itself
gives, per point, the nearest row of every class; the minimum over the points of class a
of their distance to class b is the distance between the classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.norms import norm_name, parse_norm
from ..core.validation import as_features, as_labels, check_two_classes, checked_once
from ..engine.options import SearchOptions, call_options
from ..engine.problem import units_of


@dataclass(frozen=True, eq=False)
class ClassPairs:
    """Minimum distances between classes.

    Attributes
    ----------
    classes : int64 array (C,)
        The sorted class labels (row and column order).
    distances : float64 array (C, C)
        ``distances[a, b]`` = min distance between a point of ``classes[a]`` and one of
        ``classes[b]``; symmetric. The diagonal is NaN (a class is not separated from
        itself; its within-class spacing is not computed).
    pairs : int64 array (C, C, 2)
        ``pairs[a, b]`` = (row of class a, row of class b) attaining ``distances[a, b]``,
        the lexicographically lowest such (a-row, b-row) on ties (so ``pairs[b, a]`` is
        the reverse of ``pairs[a, b]`` only without ties). -1 on the diagonal.
    norm : str
        'linf', 'l1', 'l2' or 'lP'.
    units : str
        'pixel' (uint8 data, [0, 1] scale), 'raw' (uint8, 0-255) or 'data'.
    """

    classes: np.ndarray
    distances: np.ndarray
    pairs: np.ndarray
    norm: str
    units: str

    def closest(self) -> tuple[int, int, float]:
        """(class a, class b, distance) of the closest two classes (a < b; lowest on ties)."""
        d = np.where(np.triu(np.ones(self.distances.shape, dtype=bool), 1), self.distances, np.inf)
        a, b = np.unravel_index(int(np.argmin(d)), d.shape)
        return int(self.classes[a]), int(self.classes[b]), float(self.distances[a, b])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: classes, distances (None on the diagonal), pairs, norm, units."""
        return {
            "classes": [int(c) for c in self.classes],
            "distances": [
                [None if math.isnan(v) else float(v) for v in row] for row in self.distances
            ],
            "pairs": self.pairs.tolist(),
            "norm": self.norm,
            "units": self.units,
        }


@checked_once
def class_pair_separation(
    X: Any, y: Any, *, norm: str | float = "linf", raw: bool = False, options: SearchOptions | None = None,
    **engine_options: Any,
) -> ClassPairs:
    """The matrix of minimum distances between every two classes of (X, y). Exact.

    Parameters
    ----------
    X, y
        Array-like of shape (n, ...) (images are flattened) and n integer labels, at least
        two classes. uint8 or floating.
    norm
        'linf', 'l2', 'l1' or any float p >= 1.
    raw
        uint8 input: distances in raw 0-255 units instead of the [0, 1] pixel scale.
    options, **engine_options
        How the search runs: a validated :class:`~sepcheck.engine.options.SearchOptions`, or
        backend, device, block_size, memory_budget, progress; ``info``: as for
        :func:`~sepcheck.engine.nearest_by_class`.

    Returns
    -------
    ClassPairs
    """
    from ..engine import nearest_by_class

    p = parse_norm(norm)
    Xf = as_features(X, "X")
    yv = as_labels(y, Xf.shape[0], "y", "X")
    check_two_classes(yv, "y")
    info = engine_options.pop("info", None)
    opts = call_options(options, raw, **engine_options)
    raw = opts.raw
    dist, idx, classes = nearest_by_class(Xf, yv, Xf, norm=p, options=opts, info=info)
    codes = np.searchsorted(classes, yv)
    C = classes.size
    distances = np.full((C, C), np.nan)
    pairs = np.full((C, C, 2), -1, dtype=np.int64)
    cols = np.arange(C)
    for a in range(C):
        rows = np.flatnonzero(codes == a)
        best = np.argmin(dist[rows], axis=0)  # first minimum: the lowest a-row
        distances[a] = dist[rows[best], cols]
        pairs[a, :, 0] = rows[best]
        pairs[a, :, 1] = idx[rows[best], cols]  # the lowest b-row for that a-row
    distances[cols, cols] = np.nan
    pairs[cols, cols] = -1
    return ClassPairs(classes, distances, pairs, norm_name(p), units_of(Xf, raw))


__all__ = ["class_pair_separation", "ClassPairs"]
