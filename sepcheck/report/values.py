"""Constants and pure numpy helpers of the report: the norms it shows, the default ceiling
grid, the closest cross-label pairs and the certified-accuracy curve. No I/O, no figures."""

from __future__ import annotations

import numpy as np

from ..analysis.separation import SeparationResult

#: the norms whose separation, ceiling and certified curve the report shows (primary first)
NORMS = ("linf", "l2")
#: number of eps values of a default ceiling grid
GRID_SIZE = 20
#: default grid: from 0 to half the per-point distance quantile below (few conflict edges)
GRID_QUANTILE = 0.05


def default_grid(distances: np.ndarray, typical: float | None = None, size: int = GRID_SIZE) -> np.ndarray:
    """``size`` radii from 0 to half the :data:`GRID_QUANTILE` quantile of the per-point
    distances (there the conflict graph still has few edges), extended to 1.25 x the
    typical eps when that is larger, plus the typical eps itself (sorted, once)."""
    top = float(np.quantile(distances, GRID_QUANTILE)) / 2.0
    if typical is not None and typical > 0:
        top = max(top, 1.25 * typical)
    if not top > 0:
        top = 1.0
    grid = np.linspace(0.0, top, size)
    if typical is not None and typical > 0:  # the marked eps itself, so its ceiling is read, not a neighbour's
        grid = np.union1d(grid, [float(typical)])
    return grid


def closest_pairs(res: SeparationResult, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` closest cross-label training pairs: (pairs (m, 2) int64 with i < j, each
    once; their distances (m,)), ascending by distance, ties to the lowest (i, j). Point k and
    its nearest other-label neighbour form the pair at distance ``res.distances[k]`` (the
    pair's own distance: not ``distances[min(i, j)]``, which belongs to another pair when
    the smaller index's nearest neighbour is elsewhere)."""
    k = np.arange(res.n)
    j = res.neighbors
    a, b = np.minimum(k, j), np.maximum(k, j)
    order = np.lexsort((b, a, res.distances))
    seen: set[tuple[int, int]] = set()
    pairs, dist = [], []
    for t in order:
        key = (int(a[t]), int(b[t]))
        if key not in seen:
            seen.add(key)
            pairs.append(key)
            dist.append(float(res.distances[t]))
            if len(pairs) == count:
                break
    return np.array(pairs, dtype=np.int64).reshape(-1, 2), np.array(dist)


def certified_curve(radius: np.ndarray, correct: np.ndarray, size: int = 101) -> dict[str, list[float]]:
    """Certified accuracy (correct and radius > eps) on ``size`` radii from 0 to the
    largest certified radius."""
    top = float(np.max(radius[correct])) if correct.any() else 0.0
    grid = np.linspace(0.0, top if top > 0 else 1.0, size)
    ok = np.sort(radius[correct])
    n = max(1, radius.shape[0])
    acc = (ok.size - np.searchsorted(ok, grid, side="right")) / n
    return {"eps": grid.tolist(), "certified_accuracy": acc.tolist()}


__all__ = ["GRID_QUANTILE", "GRID_SIZE", "NORMS", "certified_curve", "closest_pairs", "default_grid"]
