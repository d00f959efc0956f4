"""Keeping the k best (distance, index) pairs per query, ties to the lowest index: the
numpy and numba parts (the torch tiles' selection is :mod:`.select_torch`), importable
without torch."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def column_min(base):
    """Per column of a C-contiguous (b, a) array its minimum and first row holding it (in
    chunks of 512 columns, one thread a chunk; rows read in order, so the first minimum
    stays)."""
    b, a = base.shape
    width = 512
    m = np.empty(a, base.dtype)
    idx = np.zeros(a, np.int64)
    for c in prange((a + width - 1) // width):
        lo = c * width
        hi = min(a, lo + width)
        for j in range(lo, hi):
            m[j] = base[0, j]
        for i in range(1, b):
            for j in range(lo, hi):
                v = base[i, j]
                better = v < m[j]
                m[j] = v if better else m[j]
                idx[j] = i if better else idx[j]
    return m, idx


def sort_candidates(dist: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k smallest (dist, idx) pairs in lexicographic order; -1 indices are dropped.

    ``dist`` and ``idx`` have shape (..., c) (e.g. (m, S, c) slots); the result (..., k). invalid candidates carry index -1 and +inf.
    Duplicated candidate indices in a row are kept once.
    """
    lead = dist.shape[:-1]
    c = dist.shape[-1]
    dist = dist.reshape(-1, c)
    idx = idx.reshape(-1, c)
    m = dist.shape[0]
    dist = np.where(idx < 0, np.inf, dist)
    key_i = np.where(idx < 0, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key_i, dist), axis=1) if c else np.zeros((m, 0), dtype=np.int64)
    d_sorted = np.take_along_axis(dist, order, axis=1)
    i_sorted = np.take_along_axis(key_i, order, axis=1)
    # drop repeated indices (same candidate found twice): they sit next to each other
    if c > 1:
        dup = np.zeros_like(i_sorted, dtype=bool)
        dup[:, 1:] = i_sorted[:, 1:] == i_sorted[:, :-1]
        if dup.any():
            d_sorted = np.where(dup, np.inf, d_sorted)
            i_sorted = np.where(dup, np.iinfo(np.int64).max, i_sorted)
            order = np.lexsort((i_sorted, d_sorted), axis=1)
            d_sorted = np.take_along_axis(d_sorted, order, axis=1)
            i_sorted = np.take_along_axis(i_sorted, order, axis=1)
    out_d = np.full((m, k), np.inf)
    out_i = np.full((m, k), -1, dtype=np.int64)
    w = min(k, c)
    out_d[:, :w] = d_sorted[:, :w]
    out_i[:, :w] = np.where(np.isfinite(d_sorted[:, :w]), i_sorted[:, :w], -1)
    return out_d.reshape(*lead, k), out_i.reshape(*lead, k)
