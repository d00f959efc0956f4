"""Conflicts: identical inputs with different labels (distance 0 to another label)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.hashing import row_keys
from ..engine.sources import open_source

#: bytes of reference rows hashed at a time
_KEY_BLOCK_BYTES = 64 * 2**20


def find_conflicts(
    X: Any,
    y: np.ndarray,
    zero_rows: np.ndarray,
    X_query: Any = None,
    y_query: np.ndarray | None = None,
) -> np.ndarray:
    """Every pair (query row, reference row) with identical features and different labels.

    ``X`` and ``X_query`` are arrays or row sources (:func:`sepcheck.engine.sources.open_source`;
    a source is read block by block). ``zero_rows``: query rows whose nearest
    different-label distance is 0 (only they can conflict). Self mode (no queries): pairs
    (i, j) with i < j, each once. Returns an int64 array of shape (m, 2), sorted.
    """
    self_mode = X_query is None
    yq = y if self_mode else y_query
    zero_rows = np.asarray(zero_rows, dtype=np.int64)
    if zero_rows.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    ref = open_source(X, "X")
    qry = ref if self_mode else open_source(X_query, "X_test")
    qrows = np.concatenate([qry.read(int(i), int(i) + 1) for i in zero_rows])
    qkeys = row_keys(qrows)
    step = max(1, _KEY_BLOCK_BYTES // ref.row_bytes)
    rkeys = np.concatenate([row_keys(block) for _, _, block in ref.iter_blocks(step)])
    order = np.argsort(rkeys, kind="stable")
    sorted_keys = rkeys[order]
    pairs = []
    for row, qi, key in zip(qrows, zero_rows, qkeys, strict=False):
        lo, hi = np.searchsorted(sorted_keys, key, "left"), np.searchsorted(sorted_keys, key, "right")
        for j in order[lo:hi]:
            if yq[qi] != y[j] and (not self_mode or qi < j) and np.array_equal(row, ref.read(int(j), int(j) + 1)[0]):
                pairs.append((int(qi), int(j)))
    if not pairs:
        return np.empty((0, 2), dtype=np.int64)
    out = np.array(sorted(set(pairs)), dtype=np.int64)
    return out
