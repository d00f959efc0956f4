"""faiss backend: one flat index per class, candidates by faiss, exact rerank.

Per class c an ``IndexFlat`` holds the reference rows of class c (``IndexFlatL2`` for l2,
``METRIC_Linf``/``METRIC_L1``/``METRIC_Lp`` otherwise); every query searches the indexes of
the classes other than its own. faiss computes in float32, so its distances are candidates:
they are reranked exactly and checked with a proven error bound (see
:mod:`sepcheck.engine.kernels.candidates`); queries that cannot be proven complete are recomputed
by an exact brute force. Memory: faiss's flat indexes store float32 copies of the rows
(4 bytes per feature); when the whole reference does not fit half of the memory budget, it
is indexed chunk by chunk for every block of queries (see :func:`chunk_sizes`). GPU indexes
are used on CUDA when faiss has GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ...core.errors import SepcheckError
from ..kernels.candidates import EXTRA_CANDIDATES, U32, finish, gemm_sqdist_error, prune
from ..kernels.exact import row_norms, sq_norms
from ..problem import Problem

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
        gpu = gpu_id(device)
        index = faiss.index_cpu_to_gpu(gpu_resources(faiss, gpu), gpu, index)
    return index


#: one faiss GPU resources object per device, shared by every index of every search (each
#: object reserves a share of GPU memory: one per class could exhaust the card)
_GPU_RESOURCES: dict[int, object] = {}


def gpu_id(device: str) -> int:
    """The GPU number of a resolved device: 'cuda:N' -> N; a plain 'cuda' is this
    process's ``LOCAL_RANK`` under torchrun, else 0."""
    from ...core.devices import env_local_rank

    if ":" in device:
        return int(device.split(":")[1])
    rank = env_local_rank()
    return rank if rank is not None else 0


def gpu_resources(faiss, gpu: int):
    """The shared ``StandardGpuResources`` of GPU ``gpu`` (created on first use)."""
    if gpu not in _GPU_RESOURCES:
        _GPU_RESOURCES[gpu] = faiss.StandardGpuResources()
    return _GPU_RESOURCES[gpu]


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


def chunk_sizes(problem: Problem, budget: int, block_size: int | None) -> tuple[int, int]:
    """(query rows, reference rows) per step so that the float32 copies faiss works on, the
    candidates and their rerank fit ``budget``: half for the indexed reference rows (their
    float32 copy and the gathered rows it is made from), a quarter for the query rows (float32
    copies) and their candidates, a quarter left to faiss's distance tiles and the rerank."""
    d = problem.dim
    per_ref_row = d * (4 + problem.reference.itemsize)
    rc = max(1, min(problem.n_ref, (budget // 2) // per_ref_row))
    if block_size is not None:
        return min(block_size, max(1, problem.n_query)), rc
    n_classes = int(np.unique(problem.reference_labels).size)
    width = -(-problem.n_ref // rc) * n_classes * (problem.k + EXTRA_CANDIDATES)
    per_query = d * 8 + width * 48
    return max(1, min(QUERY_CHUNK, (budget // 4) // per_query)), rc


def _indexes(faiss, problem: Problem, rows: np.ndarray, classes: np.ndarray, device: str):
    """Per class, (its reference rows among ``rows``, a flat index holding them)."""
    out = []
    labels = problem.reference_labels[rows]
    for c in classes:
        members = rows[labels == c]
        index = _make_index(faiss, problem.dim, problem.p, device)
        if members.size:
            index.add(np.ascontiguousarray(problem.reference[members], dtype=np.float32))
        out.append((c, members, index))
    return out


def search(
    problem: Problem,
    device: str,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact k nearest different-label rows (OTHER_LABEL only) using faiss flat indexes per
    class (over chunks of reference rows when the reference does not fit the budget);
    results (m, 1, k)."""
    faiss = _faiss()
    p, k = problem.p, problem.k
    classes = np.unique(problem.reference_labels)
    qc, rc = chunk_sizes(problem, budget, block_size)
    ref_chunks = [np.arange(s, min(s + rc, problem.n_ref)) for s in range(0, problem.n_ref, rc)]
    resident = _indexes(faiss, problem, ref_chunks[0], classes, device) if len(ref_chunks) == 1 else None
    err = error_bound(problem)
    m = problem.n_query
    out_d = np.empty((m, 1, k))
    out_i = np.empty((m, 1, k), dtype=np.int64)
    recomputed = 0
    from .fallback import exact_search

    def brute(sub: Problem) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(sub, device, budget)

    for qs in range(0, m, qc):
        sl = slice(qs, qs + qc)
        qlab = problem.query_labels[sl]
        qf = np.ascontiguousarray(problem.queries[sl], dtype=np.float32)
        n = qf.shape[0]
        parts_c, parts_a = [], []
        bound = np.full(n, np.inf)
        for rows in ref_chunks:
            for c, members, index in resident or _indexes(faiss, problem, rows, classes, device):
                cc = min(k + EXTRA_CANDIDATES, members.size)
                if cc == 0:
                    continue
                cand = np.full((n, cc), -1, dtype=np.int64)
                approx = np.full((n, cc), np.inf)
                want = np.flatnonzero(qlab != c)
                if want.size:
                    dist, found = index.search(qf[want], cc)
                    valid = found >= 0
                    cand[want] = np.where(valid, members[np.where(valid, found, 0)], -1)
                    approx[want] = np.where(valid, dist, np.inf)
                    if cc < members.size:  # rows not returned are >= the last value
                        last = dist[:, -1].astype(np.float64)
                        bound[want] = np.minimum(bound[want], last - err[sl][want])
                parts_c.append(cand)
                parts_a.append(approx)
        sub = problem.subset(sl)
        cand = prune(np.concatenate(parts_c, axis=1)[:, None, :],
                     np.concatenate(parts_a, axis=1)[:, None, :], err[sl], k)
        d, i, n_fb = finish(sub, cand, bound[:, None], power_of(p), brute)
        out_d[sl], out_i[sl] = d, i
        recomputed += n_fb
        if progress is not None:
            progress(n)
    return out_d, out_i, {"recomputed": recomputed}
