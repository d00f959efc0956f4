"""faiss backend: one flat index per class, candidates by faiss, exact rerank.

Per class c an ``IndexFlat`` holds the reference rows of class c (``IndexFlatL2`` for l2,
``METRIC_Linf``/``METRIC_L1``/``METRIC_Lp`` otherwise); every query searches the indexes of
the classes other than its own. faiss computes in float32, so its distances are candidates:
they are reranked exactly and checked with a proven error bound (see
:mod:`sepcheck.engine.candidates`); queries that cannot be proven complete are recomputed
by an exact brute force. Memory: a float32 copy of the reference (4 bytes per feature),
which is what faiss's flat indexes store; GPU indexes are used on CUDA when faiss has GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import SepcheckError
from .candidates import EXTRA_CANDIDATES, U32, finish, gemm_sqdist_error, prune
from .exact import row_norms, sq_norms
from .problem import Problem

#: queries per faiss search call
QUERY_CHUNK = 4096


def has_gpu() -> bool:
    """True when the installed faiss can run on a GPU (faiss-gpu with a visible GPU)."""
    try:
        faiss = _faiss()
    except SepcheckError:
        return False
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise SepcheckError(
            "backend 'faiss' needs faiss: pip install faiss-cpu (or faiss-gpu-cu12)"
        ) from None
    return faiss


def _make_index(faiss, dim: int, p: float, device: str):
    if p == 2:
        index = faiss.IndexFlatL2(dim)
    elif math.isinf(p):
        index = faiss.IndexFlat(dim, faiss.METRIC_Linf)
    elif p == 1:
        index = faiss.IndexFlat(dim, faiss.METRIC_L1)
    else:
        index = faiss.IndexFlat(dim, faiss.METRIC_Lp)
        index.metric_arg = float(p)
    if device.startswith("cuda"):
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            raise SepcheckError(
                "backend 'faiss' on CUDA needs faiss with GPU support: install faiss-gpu-cu12, "
                "or use backend='torch'"
            )
        gpu = int(device.split(":")[1]) if ":" in device else 0
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), gpu, index)
    return index


def power_of(p: float) -> float:
    """faiss reports l2 squared and lp as the sum of p-th powers (no root)."""
    if math.isinf(p) or p == 1:
        return 1.0
    return float(p)


def error_bound(problem: Problem) -> np.ndarray:
    """Per query, a bound on |faiss value - exact value| (in faiss's units) over all rows."""
    p, d = problem.p, problem.dim
    q, r = problem.queries, problem.reference
    if problem.integer and (math.isinf(p) or (p == 1 and 255 * d < 2**24)):
        return np.zeros(problem.n_query)  # integer differences and sums are exact in float32
    if p == 2:
        sq_q = sq_norms(q)
        sq_r = float(sq_norms(r).max())
        return gemm_sqdist_error(d, sq_q, sq_r, U32) + 16 * U32 * (sq_q + sq_r)
    nq, nr = row_norms(q, p), float(row_norms(r, p).max())
    if math.isinf(p):
        return 4 * U32 * (nq + nr)
    if p == 1:
        return 2 * (d + 4) * U32 * (nq + nr)
    return 2 * (d + p + 8) * U32 * (nq + nr) ** p


def search(
    problem: Problem,
    device: str,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact k nearest different-label rows (OTHER_LABEL only) using faiss flat indexes per
    class; results (m, 1, k)."""
    faiss = _faiss()
    p, k = problem.p, problem.k
    classes = np.unique(problem.reference_labels)
    members = [np.flatnonzero(problem.reference_labels == c) for c in classes]
    indexes = []
    for rows in members:
        index = _make_index(faiss, problem.dim, p, device)
        index.add(np.ascontiguousarray(problem.reference[rows], dtype=np.float32))
        indexes.append(index)
    err = error_bound(problem)
    m = problem.n_query
    ccount = [min(k + EXTRA_CANDIDATES, rows.size) for rows in members]
    width = int(sum(ccount))
    chunk = block_size or QUERY_CHUNK
    # candidates of one chunk at a time: (chunk, sum over classes of c) indices
    out_d = np.empty((m, 1, k))
    out_i = np.empty((m, 1, k), dtype=np.int64)
    recomputed = 0
    from .fallback import exact_search

    def brute(sub: Problem) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(sub, device, budget)

    for qs in range(0, m, chunk):
        sl = slice(qs, qs + chunk)
        qlab = problem.query_labels[sl]
        qf = np.ascontiguousarray(problem.queries[sl], dtype=np.float32)
        n = qf.shape[0]
        cand = np.full((n, width), -1, dtype=np.int64)
        approx = np.full((n, width), np.inf)
        bound = np.full(n, np.inf)
        col = 0
        for c, rows, index, cc in zip(classes, members, indexes, ccount, strict=False):
            want = np.flatnonzero(qlab != c)
            if want.size:
                dist, found = index.search(qf[want], cc)
                valid = found >= 0
                cand[want, col : col + cc] = np.where(valid, rows[np.where(valid, found, 0)], -1)
                approx[want, col : col + cc] = np.where(valid, dist, np.inf)
                if cc < rows.size:  # class not fully returned: rows outside are >= the last value
                    last = dist[:, -1].astype(np.float64)
                    bound[want] = np.minimum(bound[want], last - err[sl][want])
            col += cc
        sub = problem.subset(sl)
        cand = prune(cand[:, None, :], approx[:, None, :], err[sl], k)
        d, i, n_fb = finish(sub, cand, bound[:, None], power_of(p), brute)
        out_d[sl], out_i[sl] = d, i
        recomputed += n_fb
        if progress is not None:
            progress(n)
    return out_d, out_i, {"recomputed": recomputed}
