"""Exact distances for given (query, reference) pairs: the rerank every approximate
candidate search ends with.

uint8 data is computed in int64 (bit-exact for linf and l1, an exact integer sum of
squares for l2); floating data in float64.
"""

from __future__ import annotations

import math

import numpy as np

#: uint8 squared l2 distances are summed in int32 up to this many features (255**2 * d < 2**31)
_INT32_L2_MAX_DIM = (2**31 - 1) // 255**2
#: bytes of one temporary (rows, candidates, d) array of differences computed at once (a
#: few such temporaries live together: part of every search's memory budget)
_PAIR_CHUNK_BYTES = 4 * 2**20
#: bytes of one temporary float64 block of rows in the norm helpers
_NORM_CHUNK_BYTES = 4 * 2**20
#: a power sum below this may have lost terms to underflow: recomputed scaled per pair
_TINY_SUM = 2.0**-900


def pair_distances(
    queries: np.ndarray, reference: np.ndarray, cand: np.ndarray, p: float
) -> np.ndarray:
    """Distances in raw units between ``queries[i]`` and ``reference[cand[i, j]]``.

    ``cand`` has shape (m, c); entries < 0 give +inf. Returns float64 of shape (m, c).
    """
    m, c = cand.shape
    out = np.full((m, c), np.inf)
    if m == 0 or c == 0:
        return out
    d = queries.shape[1]
    rows = max(1, _PAIR_CHUNK_BYTES // max(1, c * d * 8))
    for s in range(0, m, rows):
        cb = cand[s : s + rows]
        valid = cb >= 0
        safe = np.where(valid, cb, 0)
        out[s : s + rows] = np.where(
            valid, _dist(queries[s : s + rows], reference[safe], p), np.inf
        )
    return out


def _dist(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    """q: (m, d), r: (m, c, d) -> (m, c) float64 (differences computed in place: one
    (m, c, d) temporary)."""
    if q.dtype == np.uint8 and p == 2 and q.shape[1] <= _INT32_L2_MAX_DIM:
        diff = q[:, None, :].astype(np.int32) - r
        return np.sqrt(np.einsum("mcd,mcd->mc", diff, diff).astype(np.float64))  # exact
    if q.dtype == np.uint8:
        diff = r.astype(np.int64)
        diff -= q[:, None, :]
        np.abs(diff, out=diff)
        if math.isinf(p):
            return diff.max(axis=2).astype(np.float64)
        if p == 1:
            return diff.sum(axis=2).astype(np.float64)
        if p == 2:
            return np.sqrt(np.einsum("mcd,mcd->mc", diff, diff).astype(np.float64))
        return (diff.astype(np.float64) ** p).sum(axis=2) ** (1.0 / p)
    diff = r.astype(np.float64)
    diff -= q[:, None, :]
    np.abs(diff, out=diff)
    if math.isinf(p):
        return diff.max(axis=2)
    if p == 1:
        return diff.sum(axis=2)
    sums = (diff * diff).sum(axis=2) if p == 2 else (diff**p).sum(axis=2)
    out = np.sqrt(sums) if p == 2 else sums ** (1.0 / p)
    tiny = sums < _TINY_SUM
    if tiny.any():  # terms may have underflowed: scale each such pair by its largest term
        top = diff[tiny].max(axis=1)
        nz = top > 0
        scaled = diff[tiny][nz] / top[nz, None]
        rescued = np.zeros(top.shape)
        rescued[nz] = top[nz] * (scaled**p).sum(axis=1) ** (1.0 / p)
        out[tiny] = rescued
    return out


def _row_chunk(x: np.ndarray) -> int:
    return max(1, _NORM_CHUNK_BYTES // max(1, x.shape[1] * 8))


def row_norms(x: np.ndarray, p: float) -> np.ndarray:
    """Per-row p-norm (raw units) in float64, computed in bounded chunks."""
    out = np.empty(x.shape[0])
    chunk = _row_chunk(x)
    for s in range(0, x.shape[0], chunk):
        b = np.abs(x[s : s + chunk].astype(np.float64))
        if math.isinf(p):
            out[s : s + chunk] = b.max(axis=1)
        elif p == 1:
            out[s : s + chunk] = b.sum(axis=1)
        else:
            out[s : s + chunk] = (b**p).sum(axis=1) ** (1.0 / p)
    return out


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Per-row squared l2 norm (raw units) in float64, in bounded chunks."""
    out = np.empty(x.shape[0])
    chunk = _row_chunk(x)
    for s in range(0, x.shape[0], chunk):
        b = x[s : s + chunk].astype(np.float64)
        out[s : s + chunk] = np.einsum("ij,ij->i", b, b)
    return out
