"""Exact nearest reference row of *every* class, per query.

:func:`nearest_by_class` is what the 1/r-Lipschitz nearest-neighbour classifier needs:
for each query and each class i (the sorted unique reference labels), the distance
d(x, X_i) to the nearest reference row of class i and the lowest index among the rows at
that distance. Exact like :func:`sepcheck.nearest_other`:

* uint8 linf and l1 are computed in integer arithmetic (bit-exact); uint8 l2 as an exact
  integer sum of squares (a float64 GEMM of integers below 2**53 is exact).
* float l2 uses a GEMM for candidates and reranks them exactly in float64 with a proven
  error bound (:func:`sepcheck.engine.candidates.gemm_sqdist_error`); a (query, block)
  whose answer is not provably among the candidates is recomputed exactly.
* every other case is computed directly in float64 (float32 for uint8 linf/l1, which holds
  those integers exactly).

Backends: ``numba`` (compiled CPU kernel for linf and l1, parallel over queries; a
reference row is abandoned once its partial distance reaches the current best of *its*
class) and ``torch`` (blocked tiles on CPU or CUDA, every norm). ``auto`` picks numba for
linf/l1 on the CPU and torch otherwise. Every backend and block size gives the same answer.

A reference set with a single class is allowed (the answer is then the plain nearest
neighbour); ``nearest_other`` needs two classes, this function does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import njit, prange

from .._validation import as_features, as_labels, check_same_dim
from ..errors import SepcheckError
from ..norms import parse_norm
from .candidates import U32, U64, gemm_sqdist_error
from .exact import sq_norms
from .numba_backend import CHUNK, prefix_features
from .problem import Problem, _common_dtype, scale_of, search_limits

#: backends that nearest_by_class runs (faiss has no per-class search here)
BY_CLASS_BACKENDS = ("auto", "numba", "torch")
#: queries per numba kernel call (progress granularity)
QUERY_BATCH = 256
#: GEMM candidates per (query, class block) on the float l2 path
L2_CANDIDATES = 8
#: up to this many features, l2 is computed directly (exact float64 sums of squares):
#: cheaper than a GEMM plus candidate selection when rows are short
DIRECT_L2_MAX_DIM = 16
#: devices where uint8 l2 uses an exact float64 GEMM (fast on CPUs; on GPUs float64 is
#: often slow, so there a float32 GEMM finds candidates that are reranked in integers)
_UINT8_FLOAT64_GEMM_DEVICES = {"cpu"}


# ----------------------------------------------------------------------------------------
# public entry point
# ----------------------------------------------------------------------------------------
def nearest_by_class(
    reference: Any,
    reference_labels: Any,
    queries: Any,
    *,
    norm: str | float = "linf",
    backend: str = "auto",
    device: str = "auto",
    raw: bool = False,
    block_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool | Callable[[int], None] = False,
    info: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query and per class, the distance to and index of the nearest reference row of
    that class. Exact.

    Parameters
    ----------
    reference, reference_labels
        Array-like of shape (n, ...) (images are flattened) and its n integer labels.
        uint8 or floating; a single class is allowed.
    queries
        Rows to search for, same features (and uint8-ness) as ``reference``.
    norm
        'linf', 'l2', 'l1' or any float p >= 1.
    backend
        'auto', 'numba' (CPU, linf and l1) or 'torch' (CPU or CUDA, every norm).
    device
        'auto', 'cpu' or 'cuda'.
    raw
        uint8 input: distances in raw 0-255 units instead of the [0, 1] pixel scale.
    block_size
        Rows per block (queries and references) for the torch backend.
    memory_budget
        Extra bytes the torch blocks may use (default 512 MiB).
    progress
        True for a progress bar on stderr, or a callable receiving query counts done.
    info
        Optional dict that receives details: backend, device, (query, block) pairs
        recomputed exactly on the float l2 path.

    Returns
    -------
    distances : float64 array (n_queries, n_classes)
        ``distances[q, i]`` = distance from query q to the nearest row of ``classes[i]``.
    indices : int64 array (n_queries, n_classes)
        Row index into ``reference`` of that nearest row; ties go to the lowest index.
    classes : int64 array (n_classes,)
        The sorted unique reference labels (the column order).
    """
    from . import choose_backend, resolve_device  # late: engine/__init__ imports nothing of ours

    problem = make_by_class_problem(reference, reference_labels, queries, norm=norm)
    block_size, budget = search_limits(block_size, memory_budget)
    b = str(backend).lower()
    if b not in BY_CLASS_BACKENDS:
        raise SepcheckError(
            f"backend {backend!r} does not search per class: use one of {', '.join(BY_CLASS_BACKENDS)}"
        )
    dev = resolve_device(device)
    name = choose_backend(problem, b, dev)
    classes, codes = np.unique(problem.reference_labels, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    from ..progress import progress_callback

    with progress_callback(progress, problem.n_query, f"nearest by class ({name})") as tick:
        if name == "numba":
            dist, idx, extra = _numba_search(problem, codes, classes.size, tick)
        else:
            import torch

            dist, idx, extra = _torch_search(
                problem, codes, classes.size, torch.device(dev), budget, block_size, tick
            )
    dist = dist / scale_of(problem, raw)
    if info is not None:
        info.update({"backend": name, "device": dev, **extra})
    return dist, idx, classes.astype(np.int64)


def make_by_class_problem(
    reference: Any, reference_labels: Any, queries: Any, *, norm: str | float = "linf"
) -> Problem:
    """Validate the inputs into a :class:`Problem` (query labels unused: all -1)."""
    p = parse_norm(norm)
    ref = as_features(reference, "reference")
    rl = as_labels(reference_labels, ref.shape[0], "reference_labels", "reference")
    if queries is None:
        raise SepcheckError("queries is missing: pass the rows to search for (shape (m, features...))")
    qry = as_features(queries, "queries")
    check_same_dim(ref, qry, "reference", "queries")
    ref, qry = _common_dtype(ref, qry)
    ql = np.full(qry.shape[0], -1, dtype=np.int64)
    return Problem(ref, rl, qry, ql, p, 1, False)


# ----------------------------------------------------------------------------------------
# numba backend (linf, l1)
# ----------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, nogil=True)
def _linf_by_class_kernel(Q, Qp, R, rc, Rp, out_d, out_i, zero):  # pragma: no cover - jit
    nq, d = Q.shape
    nr = R.shape[0]
    npre = Qp.shape[1]
    for qi in prange(nq):
        bd = out_d[qi]
        bi = out_i[qi]
        q = Q[qi]
        qp = Qp[qi]
        for j in range(nr):
            c = rc[j]
            thr = bd[c]
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
            if m < thr:  # strict: an earlier (lower-index) row of the class keeps a tie
                bd[c] = m
                bi[c] = j


@njit(parallel=True, cache=True, nogil=True)
def _l1_by_class_kernel(Q, Qp, R, rc, Rp, out_d, out_i, zero):  # pragma: no cover - jit
    nq, d = Q.shape
    nr = R.shape[0]
    npre = Qp.shape[1]
    for qi in prange(nq):
        bd = out_d[qi]
        bi = out_i[qi]
        q = Q[qi]
        qp = Qp[qi]
        for j in range(nr):
            c = rc[j]
            thr = bd[c]
            rp = Rp[j]
            low = abs((zero + qp[0]) - (zero + rp[0]))
            for t in range(1, npre):
                low += abs((zero + qp[t]) - (zero + rp[t]))
            if low >= thr:
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
                bd[c] = acc
                bi[c] = j


def _numba_search(
    problem: Problem, codes: np.ndarray, n_classes: int, tick: Callable[[int], None] | None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact per-class nearest rows for linf or l1 with the compiled kernel (raw units)."""
    import os

    R = problem.reference
    feats = prefix_features(R)
    Rp = np.ascontiguousarray(R[:, feats])
    if problem.integer:
        zero = np.int32(0) if math.isinf(problem.p) else np.int64(0)
        big = np.iinfo(zero.dtype).max
    else:
        zero = np.float64(0.0)
        big = np.inf
    m = problem.n_query
    out_d = np.full((m, n_classes), big, dtype=zero.dtype)
    out_i = np.full((m, n_classes), -1, dtype=np.int64)
    kernel = _linf_by_class_kernel if math.isinf(problem.p) else _l1_by_class_kernel
    prev = numba.get_num_threads()
    env = os.environ.get("SEPCHECK_THREADS")
    if env:
        numba.set_num_threads(max(1, min(int(env), numba.config.NUMBA_NUM_THREADS)))
    try:
        for qs in range(0, m, QUERY_BATCH):
            sl = slice(qs, qs + QUERY_BATCH)
            Q = problem.queries[sl]
            kernel(Q, np.ascontiguousarray(Q[:, feats]), R, codes, Rp, out_d[sl], out_i[sl], zero)
            if tick is not None:
                tick(Q.shape[0])
    finally:
        numba.set_num_threads(prev)
    return out_d.astype(np.float64), out_i, {}


# ----------------------------------------------------------------------------------------
# torch backend (every norm, CPU or CUDA)
# ----------------------------------------------------------------------------------------
def _block_sizes(problem: Problem, budget: int, block_size: int | None, elem: int) -> tuple[int, int]:
    """(query rows, reference rows) per tile within ``budget`` bytes."""
    if block_size is not None:
        return min(block_size, problem.n_query), min(block_size, problem.n_ref)
    d = problem.dim
    bq = max(1, min(problem.n_query, 512))
    # candidates gathered on the l2 path: bq * L2_CANDIDATES * d float64
    fixed = bq * d * (elem + 8) + bq * L2_CANDIDATES * d * 8 * 2
    per_ref_row = bq * 24 + d * (elem + 1)
    br = max(1, min(problem.n_ref, (budget - fixed) // max(1, per_ref_row)))
    return bq, int(br)


def _direct_dtype(problem: Problem):
    import torch

    if problem.integer and (math.isinf(problem.p) or (problem.p == 1 and 255 * problem.dim < 2**24)):
        return torch.float32  # integer results held exactly
    return torch.float64


def _torch_search(
    problem: Problem,
    codes: np.ndarray,
    n_classes: int,
    device: Any,
    budget: int,
    block_size: int | None,
    tick: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Blocked tiles, one class at a time (rows of a class in index order, so a strict
    improvement keeps the lowest index on ties). Distances in raw units."""
    import torch

    from .torch_backend import _set_highest_precision

    p = problem.p
    gemm = p == 2 and problem.dim > DIRECT_L2_MAX_DIM
    direct_l2 = p == 2 and not gemm
    if direct_l2:
        dt = torch.float64
        exact_gemm = False
    elif gemm:
        # uint8 on the CPU: a float64 GEMM of small integers is exact (no rerank needed).
        # Otherwise the GEMM runs in float32 (float64 for float64 data) and its candidates
        # are reranked exactly with a proven error bound.
        exact_gemm = problem.integer and device.type in _UINT8_FLOAT64_GEMM_DEVICES
        dt = torch.float64 if (exact_gemm or problem.queries.dtype == np.float64) else torch.float32
    else:
        dt = _direct_dtype(problem)
        exact_gemm = False
    elem = torch.finfo(dt).bits // 8
    bq, br = _block_sizes(problem, budget, block_size, elem)
    order = np.argsort(codes, kind="stable")  # class by class, index order inside each
    bounds = np.searchsorted(codes[order], np.arange(n_classes + 1))
    members = [order[bounds[c] : bounds[c + 1]] for c in range(n_classes)]
    m = problem.n_query
    out_d = np.empty((m, n_classes))
    out_i = np.empty((m, n_classes), dtype=np.int64)
    recomputed = 0
    if gemm:
        sq_q_all = sq_norms(problem.queries)
        sq_r_all = sq_norms(problem.reference)
        unit = U32 if dt == torch.float32 else U64
        err_all = gemm_sqdist_error(problem.dim, sq_q_all, float(sq_r_all.max()), unit)
    prev = _set_highest_precision()
    try:
        for qs in range(0, m, bq):
            qn = problem.queries[qs : qs + bq]
            q = _tensor(qn).to(device=device, dtype=dt)
            best_d = torch.full((q.shape[0], n_classes), float("inf"), dtype=torch.float64, device=device)
            best_i = torch.full((q.shape[0], n_classes), -1, dtype=torch.int64, device=device)
            if gemm:
                sq_q = _tensor(sq_q_all[qs : qs + bq]).to(device=device, dtype=dt)
                err = _tensor(err_all[qs : qs + bq]).to(device)
                q64 = _tensor(qn).to(device=device, dtype=torch.float64)
            for c, rows in enumerate(members):
                for rs in range(0, rows.size, br):
                    blk = rows[rs : rs + br]
                    r = _tensor(problem.reference[blk]).to(device=device, dtype=dt)
                    blk_t = _tensor(blk).to(device)
                    if gemm:
                        sq_r = _tensor(sq_r_all[blk]).to(device=device, dtype=dt)
                        v, a, n_fb = _l2_block(q, q64, sq_q, r, sq_r, err, exact_gemm)
                        recomputed += n_fb
                    elif direct_l2:  # exact float64 squared distances, feature by feature
                        v, a = torch.min(_sq_dist_by_feature(q, r), dim=1)
                    else:
                        tile = torch.cdist(
                            q.unsqueeze(0), r.unsqueeze(0), p=p, compute_mode="donot_use_mm_for_euclid_dist"
                        )[0]
                        v, a = torch.min(tile, dim=1)  # first index among equal minima
                        v = v.to(torch.float64)
                    better = v < best_d[:, c]
                    best_d[:, c] = torch.where(better, v, best_d[:, c])
                    best_i[:, c] = torch.where(better, blk_t[a], best_i[:, c])
            out_d[qs : qs + bq] = best_d.cpu().numpy()
            out_i[qs : qs + bq] = best_i.cpu().numpy()
            if tick is not None:
                tick(q.shape[0])
    finally:
        torch.set_float32_matmul_precision(prev)
    if p == 2:  # squared so far; numpy's sqrt is correctly rounded (torch's need not be)
        np.sqrt(out_d, out=out_d)
    return out_d, out_i, ({"recomputed": recomputed} if gemm else {})


def _l2_block(q, q64, sq_q, r, sq_r, err, exact_gemm):
    """Exact squared l2 minimum (value, position in the block) of every query over one
    block of one class, from a GEMM. Returns (values float64, positions, queries recomputed).

    Stage 1 reranks the best GEMM candidate exactly; it is the unique minimum when every
    other row's GEMM value minus the error bound is still larger. Queries where that fails
    (near ties, duplicates) rerank L2_CANDIDATES candidates (stage 2), and the few that
    are still not provably complete are recomputed exactly against the whole block.
    """
    import torch

    approx = torch.addmm(sq_q[:, None] + sq_r[None, :], q, r.T, alpha=-2.0)
    if exact_gemm:  # integer data in float64: every value is the exact integer
        v, a = torch.min(approx, dim=1)  # first index among equal minima
        return v.to(torch.float64), a, 0
    nb = r.shape[0]
    if nb == 1:
        return _sq_diff(q64, r.to(torch.float64)), torch.zeros(q.shape[0], dtype=torch.int64, device=q.device), 0
    kc = min(L2_CANDIDATES, nb)
    top = torch.topk(approx, kc, dim=1, largest=False, sorted=True)
    pos, tv = top.indices, top.values.to(torch.float64)
    # float64 rerank rounding: relative d * u64 on each side of the comparison
    slack = 1.0 + 2.0 * q.shape[1] * U64 + 4 * U64
    a = pos[:, 0].clone()
    v = _sq_diff(q64, r[a].to(torch.float64))
    bad = torch.nonzero(tv[:, 1] - err <= v * slack).flatten()
    if bad.numel() == 0:
        return v, a, 0
    cp = pos[bad]
    ex = _sq_diff(q64[bad, None, :], r[cp].to(torch.float64))  # (n_bad, kc)
    ex_min = ex.min(dim=1).values
    big = torch.iinfo(torch.int64).max
    a[bad] = torch.where(ex == ex_min[:, None], cp, torch.full_like(cp, big)).min(dim=1).values
    v[bad] = ex_min
    if kc == nb:
        return v, a, 0
    still = bad[tv[bad, -1] - err[bad] <= ex_min * slack]
    if still.numel():
        full = _sq_diff_rows(q64[still], r.to(torch.float64))  # (n, nb) exact, same arithmetic
        fv, fa = torch.min(full, dim=1)
        v[still] = fv
        a[still] = fa
    return v, a, int(still.numel())


def _sq_diff(q: Any, r: Any) -> Any:
    """Sum over the last axis of (q - r)**2 in float64 (broadcasting)."""
    diff = q - r
    return (diff * diff).sum(dim=-1)


def _sq_dist_by_feature(q: Any, r: Any) -> Any:
    """(a, b) squared distances summed one feature at a time (short rows: d passes over
    the tile instead of a (a, b, d) temporary)."""
    out = (q[:, None, 0] - r[None, :, 0]) ** 2
    for k in range(1, q.shape[1]):
        out += (q[:, None, k] - r[None, :, k]) ** 2
    return out


def _sq_diff_rows(q: Any, r: Any, chunk_bytes: int = 64 * 2**20) -> Any:
    """(a, b) exact squared distances between rows of q (a, d) and r (b, d), chunked."""
    import torch

    a, d = q.shape
    out = torch.empty((a, r.shape[0]), dtype=torch.float64, device=q.device)
    step = max(1, chunk_bytes // max(1, r.shape[0] * d * 8))
    for s in range(0, a, step):
        out[s : s + step] = _sq_diff(q[s : s + step, None, :], r[None, :, :])
    return out


def _tensor(a: np.ndarray) -> Any:
    """``torch.from_numpy`` without the warning for read-only arrays (memory-mapped or IDX
    buffers): sepcheck never writes to its inputs."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


__all__ = ["nearest_by_class", "make_by_class_problem", "BY_CLASS_BACKENDS"]
