"""Compiled CPU kernel (numba) for linf and l1: exact, pruned, parallel over queries.

Results go to slots (see :mod:`sepcheck.engine.problem`): one kernel per norm serves both
groupings (row j goes to slot ``slot[j]``; OTHER_LABEL also skips rows of the query's label).
For each query the reference rows are scanned in index order; a row is abandoned as soon
as its partial distance reaches the current k-th best (it can no longer enter its slot, since ties
go to the lower index and every earlier row has a lower index). linf checks a short prefix
of the highest-variance features first, which abandons most rows after a few features; l1
first compares sums over groups of 16 features, a lower bound on the l1 distance (triangle
inequality). uint8 data is computed in integers (bit-exact); float data in float64.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator

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
def _insert(bd, bi, s, v, j, k):
    # bd[s] sorted ascending; a new row has a higher index than all kept rows of its slot:
    # it goes after equals (ties to the lowest index)
    pos = k - 1
    while pos > 0 and bd[s, pos - 1] > v:
        bd[s, pos] = bd[s, pos - 1]
        bi[s, pos] = bi[s, pos - 1]
        pos -= 1
    bd[s, pos] = v
    bi[s, pos] = j


@njit(parallel=True, cache=True, nogil=True)
def _linf_kernel(Q, ql, Qp, R, rl, slot, mask, Rp, out_d, out_i, zero):
    # out_d/out_i: (nq, S, k). Row j goes to slot[j]; with ``mask`` it is skipped when its
    # label equals the query's (OTHER_LABEL). Qp/Rp: the high-variance feature prefix.
    nq, d = Q.shape
    nr = R.shape[0]
    npre = Qp.shape[1]
    k = out_d.shape[2]
    for qi in prange(nq):
        bd = out_d[qi]
        bi = out_i[qi]
        lab = ql[qi]
        q = Q[qi]
        qp = Qp[qi]
        for j in range(nr):
            if mask and rl[j] == lab:
                continue
            sj = slot[j]
            thr = bd[sj, k - 1]
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
            if m < thr:  # strict: an earlier (lower-index) row of the slot keeps a tie
                _insert(bd, bi, sj, m, j, k)


@njit(parallel=True, cache=True, nogil=True)
def _l1_kernel(Q, ql, Qg, R, rl, slot, mask, Rg, out_d, out_i, zero, slack):
    # Qg/Rg: sums over groups of features; sum_g |Qg - Rg| <= ||q - r||_1 (triangle inequality)
    nq, d = Q.shape
    nr = R.shape[0]
    ng = Qg.shape[1]
    k = out_d.shape[2]
    for qi in prange(nq):
        bd = out_d[qi]
        bi = out_i[qi]
        lab = ql[qi]
        q = Q[qi]
        qg = Qg[qi]
        for j in range(nr):
            if mask and rl[j] == lab:
                continue
            sj = slot[j]
            thr = bd[sj, k - 1]
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
                _insert(bd, bi, sj, acc, j, k)


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


def search(
    problem: Problem,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact search for linf or l1 with the compiled kernel; results in slots (m, S, k).

    The data is used as it is (uint8 stays uint8); the only copies are the n x PREFIX
    feature prefix (linf) or the n x d/GROUP group sums (l1, 8 bytes each) and the
    (n_query, S, k) outputs.
    """
    integer = problem.integer
    R = problem.reference
    linf = math.isinf(problem.p)
    if linf:
        feats = prefix_features(R)
        Rp = np.ascontiguousarray(R[:, feats])
    else:
        Rp = _group_sums(R, integer)
    k, S = problem.k, problem.n_slots
    if integer:
        zero = np.int32(0) if linf else np.int64(0)
        big = np.iinfo(zero.dtype).max
    else:
        zero = np.float64(0.0)
        big = np.inf
    out_d = np.full((problem.n_query, S, k), big, dtype=zero.dtype)
    out_i = np.full((problem.n_query, S, k), -1, dtype=np.int64)
    slot = problem.slot_codes
    mask = not problem.by_class
    # float group sums carry rounding: prune only when the bound clears thr with slack
    slack = 1.0 if integer else 1.0 - 1e-9
    with numba_threads():
        for qs in range(0, problem.n_query, QUERY_BATCH):
            sl = slice(qs, qs + QUERY_BATCH)
            Q = problem.queries[sl]
            ql = problem.query_labels[sl]
            rl = problem.reference_labels
            if linf:
                Qp = np.ascontiguousarray(Q[:, feats])
                _linf_kernel(Q, ql, Qp, R, rl, slot, mask, Rp, out_d[sl], out_i[sl], zero)
            else:
                Qg = _group_sums(Q, integer)
                _l1_kernel(Q, ql, Qg, R, rl, slot, mask, Rp, out_d[sl], out_i[sl], zero, slack)
            if progress is not None:
                progress(Q.shape[0])
    dist = out_d.astype(np.float64)
    dist[out_i < 0] = np.inf
    return dist, out_i, {}


def thread_setting() -> int | None:
    """The ``SEPCHECK_THREADS`` environment variable (threads of the compiled kernels), or
    None for numba's default."""
    env = os.environ.get("SEPCHECK_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


@contextlib.contextmanager
def numba_threads() -> Iterator[None]:
    """numba's thread count set to :func:`thread_setting` (capped at the pool size)."""
    threads = thread_setting()
    prev = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(prev)
