"""Conflicts: identical inputs with different labels (distance 0 to another label)."""

from __future__ import annotations

import numpy as np

from .hashing import row_keys


def find_conflicts(
    X: np.ndarray,
    y: np.ndarray,
    zero_rows: np.ndarray,
    X_query: np.ndarray | None = None,
    y_query: np.ndarray | None = None,
) -> np.ndarray:
    """Every pair (query row, reference row) with identical features and different labels.

    ``zero_rows``: query rows whose nearest different-label distance is 0 (only they can
    conflict). Self mode (no queries): pairs (i, j) with i < j, each once. Returns an int64
    array of shape (m, 2), sorted.
    """
    self_mode = X_query is None
    Xq = X if self_mode else X_query
    yq = y if self_mode else y_query
    X2 = X.reshape(X.shape[0], -1)
    Xq2 = Xq.reshape(Xq.shape[0], -1)
    zero_rows = np.asarray(zero_rows, dtype=np.int64)
    if zero_rows.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    qkeys = row_keys(Xq2[zero_rows])
    rkeys = row_keys(X2)
    order = np.argsort(rkeys, kind="stable")
    sorted_keys = rkeys[order]
    pairs = []
    for qi, key in zip(zero_rows, qkeys, strict=False):
        lo, hi = np.searchsorted(sorted_keys, key, "left"), np.searchsorted(sorted_keys, key, "right")
        for j in order[lo:hi]:
            if yq[qi] != y[j] and (not self_mode or qi < j) and np.array_equal(Xq2[qi], X2[j]):
                pairs.append((int(qi), int(j)))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    out = np.array(sorted(set(pairs)), dtype=np.int64)
    return out
