"""Independent float64 brute-force oracles (plain numpy, no sepcheck code).

Distances are computed on float64 copies of the inputs; for uint8 data the differences are
integers, so linf and l1 are exact; the result is divided by ``scale`` at the end.
"""

from __future__ import annotations

import math

import numpy as np


def pairwise(A: np.ndarray, B: np.ndarray, p: float) -> np.ndarray:
    """(len(A), len(B)) float64 distances, computed row by row (no big broadcast)."""
    A = np.asarray(A, dtype=np.float64).reshape(len(A), -1)
    B = np.asarray(B, dtype=np.float64).reshape(len(B), -1)
    out = np.empty((A.shape[0], B.shape[0]))
    for i in range(A.shape[0]):
        diff = np.abs(B - A[i])
        if math.isinf(p):
            out[i] = diff.max(axis=1)
        elif p == 1:
            out[i] = diff.sum(axis=1)
        elif p == 2:
            out[i] = np.sqrt((diff * diff).sum(axis=1))
        else:
            out[i] = (diff**p).sum(axis=1) ** (1.0 / p)
    return out


def nearest_other(X, y, Xq=None, yq=None, p=math.inf, k=1, scale=1.0):
    """k nearest rows of X with a label different from each query's; ties to lowest index.

    Returns (distances (m, k) with +inf padding, indices (m, k) with -1 padding).
    """
    y = np.asarray(y).reshape(-1)
    if Xq is None:
        Xq, yq = X, y
    yq = np.asarray(yq).reshape(-1)
    D = pairwise(Xq, X, p) / scale
    m = D.shape[0]
    dist = np.full((m, k), np.inf)
    idx = np.full((m, k), -1, dtype=np.int64)
    for i in range(m):
        cand = np.flatnonzero(y != yq[i])
        order = cand[np.lexsort((cand, D[i, cand]))][:k]
        dist[i, : order.size] = D[i, order]
        idx[i, : order.size] = order
    return dist, idx


def class_distances(X, y, Xq, p=math.inf, scale=1.0):
    """(m, n_classes) distance from each query to the nearest row of each class (sorted
    classes), and the index of that row (lowest index on ties)."""
    y = np.asarray(y).reshape(-1)
    classes = np.unique(y)
    D = pairwise(Xq, X, p) / scale
    dist = np.empty((D.shape[0], classes.size))
    idx = np.empty((D.shape[0], classes.size), dtype=np.int64)
    for c, lab in enumerate(classes):
        rows = np.flatnonzero(y == lab)
        sub = D[:, rows]
        j = np.argmin(sub, axis=1)  # first minimum = lowest index
        dist[:, c] = sub[np.arange(sub.shape[0]), j]
        idx[:, c] = rows[j]
    return dist, idx, classes


def within(X, y, radius, Xq=None, yq=None, p=math.inf, scale=1.0, other_label=True):
    """Per query, the (index, distance) pairs with distance <= radius, sorted by (distance,
    index): rows of another label only with ``other_label``; never (i, i) in self mode."""
    self_mode = Xq is None
    if self_mode:
        Xq, yq = X, y
    D = pairwise(Xq, X, p) / scale
    out = []
    for i in range(D.shape[0]):
        ok = D[i] <= radius
        if other_label:
            ok &= np.asarray(y) != np.asarray(yq)[i]
        if self_mode:
            ok[i] = False
        cand = np.flatnonzero(ok)
        order = cand[np.lexsort((cand, D[i, cand]))]
        out.append((order, D[i, order]))
    return out
