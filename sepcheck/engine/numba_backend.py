"""Compiled CPU kernel (numba) for linf and l1: exact, pruned, parallel over queries.

For each query the reference rows are scanned in index order; a row is abandoned as soon
as its partial distance reaches the current k-th best (it can no longer enter, since ties
go to the lower index and every earlier row has a lower index). linf checks a short prefix
of the highest-variance features first, which abandons most rows after a few features; l1
first compares sums over groups of 16 features, a lower bound on the l1 distance (triangle
inequality). uint8 data is computed in integers (bit-exact); float data in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange

from .problem import Problem

#: features checked first (highest variance); a small copy of n x PREFIX values
PREFIX = 32
#: features per chunk between two pruning checks in the full scan
CHUNK = 32
#: queries per kernel call (progress granularity)
QUERY_BATCH = 512


@njit(inline="always")
def _insert(bd, bi, v, j, k):
    # bd sorted ascending; a new row has a higher index than all kept rows: it goes after equals
    pos = k - 1
    while pos > 0 and bd[pos - 1] > v:
        bd[pos] = bd[pos - 1]
        bi[pos] = bi[pos - 1]
        pos -= 1
    bd[pos] = v
    bi[pos] = j


@njit(parallel=True, cache=True, nogil=True)
def _linf_kernel(Q, ql, Qp, R, rl, Rp, k, out_d, out_i, zero):
    nq, d = Q.shape
    nr = R.shape[0]
    npre = Qp.shape[1]
    for qi in prange(nq):
        bd = out_d[qi]
        bi = out_i[qi]
        lab = ql[qi]
        thr = bd[k - 1]
        q = Q[qi]
        qp = Qp[qi]
        for j in range(nr):
            if rl[j] == lab:
                continue
            rp = Rp[j]
            m = abs((zero + qp[0]) - (zero + rp[0]))
            for t in range(1, npre):
                v = abs((zero + qp[t]) - (zero + rp[t]))
                if v > m:
                    m = v
            if m >= thr:
                continue
            r = R[j]
            s = 0
            while s < d:
                e = min(s + CHUNK, d)
                for t in range(s, e):
                    v = abs((zero + q[t]) - (zero + r[t]))
                    if v > m:
                        m = v
                if m >= thr:
                    break
                s = e
            if m < thr:
                _insert(bd, bi, m, j, k)
                thr = bd[k - 1]


@njit(parallel=True, cache=True, nogil=True)
def _l1_kernel(Q, ql, Qg, R, rl, Rg, k, out_d, out_i, zero, slack):
    # Qg/Rg: sums over groups of features; sum_g |Qg - Rg| <= ||q - r||_1 (triangle inequality)
    nq, d = Q.shape
    nr = R.shape[0]
    ng = Qg.shape[1]
    for qi in prange(nq):
        bd = out_d[qi]
        bi = out_i[qi]
        lab = ql[qi]
        thr = bd[k - 1]
        q = Q[qi]
        qg = Qg[qi]
        for j in range(nr):
            if rl[j] == lab:
                continue
            rg = Rg[j]
            low = abs(qg[0] - rg[0])
            for t in range(1, ng):
                low += abs(qg[t] - rg[t])
            if low * slack >= thr:
                continue
            r = R[j]
            acc = zero * 0
            s = 0
            while s < d:
                e = min(s + CHUNK, d)
                for t in range(s, e):
                    acc += abs((zero + q[t]) - (zero + r[t]))
                if acc >= thr:
                    break
                s = e
            if acc < thr:
                _insert(bd, bi, acc, j, k)
                thr = bd[k - 1]


#: features per group for the l1 lower bound
GROUP = 16


def _group_sums(x: np.ndarray, integer: bool) -> np.ndarray:
    """Sums of consecutive groups of GROUP features (int64 for uint8, float64 otherwise)."""
    n, d = x.shape
    ng = -(-d // GROUP)
    out = np.zeros((n, ng), dtype=np.int64 if integer else np.float64)
    for s in range(0, n, 1024):
        b = x[s : s + 1024].astype(out.dtype)
        pad = ng * GROUP - d
        if pad:
            b = np.concatenate([b, np.zeros((b.shape[0], pad), dtype=b.dtype)], axis=1)
        out[s : s + 1024] = b.reshape(b.shape[0], ng, GROUP).sum(axis=2)
    return out


def prefix_features(ref: np.ndarray, sample: int = 4096, chunk: int = 256) -> np.ndarray:
    """Indices (sorted) of the PREFIX features with the largest variance, estimated on at
    most ``sample`` evenly spaced rows, ``chunk`` rows at a time (bounded memory)."""
    d = ref.shape[1]
    if d <= PREFIX:
        return np.arange(d)
    rows = np.linspace(0, ref.shape[0] - 1, min(sample, ref.shape[0])).astype(np.int64)
    total = np.zeros(d)
    total_sq = np.zeros(d)
    for s in range(0, rows.size, chunk):
        b = ref[rows[s : s + chunk]].astype(np.float64)
        total += b.sum(axis=0)
        total_sq += (b * b).sum(axis=0)
    var = total_sq / rows.size - (total / rows.size) ** 2
    return np.sort(np.argsort(-var, kind="stable")[:PREFIX])


def supports(problem: Problem) -> bool:
    return math.isinf(problem.p) or problem.p == 1


def search(
    problem: Problem,
    progress: Callable[[int], None] | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact k nearest different-label rows for linf or l1 with the compiled kernel.

    The data is used as it is (uint8 stays uint8); the only copies are the n x PREFIX
    feature prefix (linf) or the n x d/GROUP group sums (l1, 8 bytes each) and the
    (n_query, k) outputs.
    """
    integer = problem.integer
    R = problem.reference
    linf = math.isinf(problem.p)
    if linf:
        feats = prefix_features(R)
        Rp = np.ascontiguousarray(R[:, feats])
    else:
        Rp = _group_sums(R, integer)
    k = problem.k
    if integer:
        zero = np.int32(0) if math.isinf(problem.p) else np.int64(0)
        big = np.iinfo(zero.dtype).max
    else:
        zero = np.float64(0.0)
        big = np.inf
    out_d = np.full((problem.n_query, k), big, dtype=zero.dtype)
    out_i = np.full((problem.n_query, k), -1, dtype=np.int64)
    # float group sums carry rounding: prune only when the bound clears thr with slack
    slack = 1.0 if integer else 1.0 - 1e-9
    prev_threads = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        for qs in range(0, problem.n_query, QUERY_BATCH):
            sl = slice(qs, qs + QUERY_BATCH)
            Q = problem.queries[sl]
            if linf:
                Qp = np.ascontiguousarray(Q[:, feats])
                _linf_kernel(Q, problem.query_labels[sl], Qp, R, problem.reference_labels, Rp, k,
                             out_d[sl], out_i[sl], zero)
            else:
                Qg = _group_sums(Q, integer)
                _l1_kernel(Q, problem.query_labels[sl], Qg, R, problem.reference_labels, Rp, k,
                           out_d[sl], out_i[sl], zero, slack)
            if progress is not None:
                progress(Q.shape[0])
    finally:
        numba.set_num_threads(prev_threads)
    dist = out_d.astype(np.float64)
    dist[out_i < 0] = np.inf
    return dist, out_i, {}
