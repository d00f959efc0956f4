"""The portable backend: blocked torch on CPU or CUDA, for both groupings.

One tiling driver (:func:`_drive`) walks (query block x reference block) tiles; per tile it
either masks rows of the query's own label (OTHER_LABEL, one slot) or splits the block's
columns by class (BY_CLASS, rows of a block gathered class by class in index order), and
merges each slot's columns into the running answer. What a tile holds is one of:

* exact tiles: ``torch.cdist`` (float32 for uint8 linf/l1, whose integer results float32
  holds exactly; float64 otherwise), merged as the k best per slot, ties to the lowest
  index; l2 with at most ``DIRECT_L2_MAX_DIM`` features too;
* approximate l2 tiles: a float32 GEMM (||q||^2 + ||r||^2 - 2 q.r; float64 for float64
  data or where float32 matmul runs in reduced precision) whose c smallest values per slot
  are candidates, reranked exactly with a proven error bound
  (:mod:`sepcheck.engine.candidates`), incomplete queries recomputed by exact tiles.
  uint8 l2 takes this path too (faster on the CPU than an exact float64 GEMM: MNIST
  test-test 6 s against 12 s on the 2-core machine).

Memory: one (query block x reference block) tile plus the two converted blocks. On CUDA the
reference is uploaded once in its own dtype (uint8 stays uint8) when it takes at most
:data:`RESIDENT_FRACTION` of the free GPU memory, and each block is converted on the device;
otherwise blocks are copied from the host as they are needed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .candidates import EXTRA_CANDIDATES, U32, U64, finish, gemm_sqdist_error, prune
from .exact import sq_norms
from .problem import Problem
from .select import empty_best, merge_block, merge_candidates

#: up to this many features, l2 is computed by exact tiles (cheaper than a GEMM plus
#: candidate selection when rows are short)
DIRECT_L2_MAX_DIM = 16
#: on CUDA, the reference stays on the device when it takes at most this share of free memory
RESIDENT_FRACTION = 0.4


def resident_reference(problem: Problem, device: torch.device) -> torch.Tensor | None:
    """The whole reference on ``device`` in its own dtype, uploaded once, or None (CPU, or
    too large for :data:`RESIDENT_FRACTION` of the free GPU memory)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if problem.reference.nbytes > RESIDENT_FRACTION * free:
        return None
    return as_tensor(problem.reference).to(device)


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` without the warning for read-only arrays (memory-mapped or IDX
    buffers): sepcheck never writes to its inputs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


def float32_matmul_is_exact(device: torch.device) -> bool:
    """True when float32 matmul on ``device`` runs in full float32 (not TF32 or bf16), by a
    probe: 8 x (1 + 2**-20) summed in a GEMM is exactly 8 + 2**-17 in float32, but 8 in any
    format with fewer than 21 mantissa bits. Reads no global setting and changes none."""
    a = torch.full((8, 8), 1.0 + 2.0**-20, dtype=torch.float32, device=device)
    b = torch.ones((8, 8), dtype=torch.float32, device=device)
    return bool(torch.all(a @ b == 8.0 + 2.0**-17).item())


def block_sizes(
    problem: Problem, budget: int, block_size: int | None, elem: int
) -> tuple[int, int]:
    """(query rows, reference rows) per tile so that the tile and converted blocks fit ``budget``."""
    if block_size is not None:
        return min(block_size, problem.n_query), min(block_size, problem.n_ref)
    d = problem.dim
    bq = min(problem.n_query, 1024)
    # bytes per tile entry: the tile, its mask and merge temporaries (k > 1 sorts)
    per_entry = 48 if problem.k > 1 else 24
    # a reference row: its converted copy, plus the gathered uint8/float copy per class;
    # twice: the next block is converted while the previous one is still alive
    per_ref_row = bq * per_entry + 2 * d * (
        elem + (problem.reference.itemsize if problem.by_class else 0)
    )
    br = max(1, min(problem.n_ref, (budget - bq * d * elem) // max(1, per_ref_row)))
    return bq, int(br)


def direct_dtype(problem: Problem) -> torch.dtype:
    """dtype of exact cdist tiles: float32 where it holds uint8 linf/l1 results exactly."""
    if problem.integer and (
        math.isinf(problem.p) or (problem.p == 1 and 255 * problem.dim < 2**24)
    ):
        return torch.float32
    return torch.float64


def _drive(
    problem: Problem,
    device: torch.device,
    bq: int,
    br: int,
    dt: torch.dtype,
    tile_of: Callable[[torch.Tensor, int, torch.Tensor, np.ndarray], torch.Tensor],
    width: int,
    merge: Callable,
    on_block: Callable[[int, torch.Tensor, torch.Tensor], None],
    progress: Callable[[int], None] | None,
) -> None:
    """The tiling driver of both groupings.

    For every query block (rows ``qs..``, converted ``q``) and every reference block, the
    tile ``tile_of(q, qs, r, rows)`` (bq, b) over reference rows ``rows`` (converted ``r``)
    is merged slot by slot into running (bq, S, width) values and indices with
    ``merge(vals, inds, tile_columns, row_ids)``; finished query blocks go to
    ``on_block(qs, vals, inds)``. OTHER_LABEL: one slot, rows of the query's label are +inf.
    BY_CLASS: the block's rows are taken class by class (index order inside each class),
    so each slot's columns are contiguous and increasing.
    """
    S = problem.n_slots
    codes = problem.slot_codes
    rl = as_tensor(problem.reference_labels).to(device)
    ql = as_tensor(problem.query_labels).to(device)
    resident = resident_reference(problem, device)
    buf = None
    for qs in range(0, problem.n_query, bq):
        q = as_tensor(problem.queries[qs : qs + bq]).to(device=device, dtype=dt)
        best = [empty_best(q.shape[0], width, device) for _ in range(S)]
        for rs in range(0, problem.n_ref, br):
            if problem.by_class:
                order = np.argsort(codes[rs : rs + br], kind="stable")
                rows = rs + order
                bounds = np.searchsorted(codes[rows], np.arange(S + 1))
            else:
                rows = np.arange(rs, min(rs + br, problem.n_ref))
                bounds = np.array([0, rows.size])
            ids = as_tensor(rows).to(device)
            if resident is not None:
                r = (resident[ids] if problem.by_class else resident[rs : rs + br]).to(dt)
            else:
                r_np = problem.reference[rows] if problem.by_class else problem.reference[rs : rs + br]
                r, buf = converted(as_tensor(r_np), device, dt, buf)
            tile = tile_of(q, qs, r, rows)
            if not problem.by_class:
                same = ql[qs : qs + bq, None] == rl[None, rs : rs + br]
                tile = tile.masked_fill_(same, float("inf"))
            for s in range(S):
                a, b = int(bounds[s]), int(bounds[s + 1])
                if b > a:
                    best[s] = merge(*best[s], tile[:, a:b], ids[a:b])
        vals = torch.stack([v for v, _ in best], dim=1)
        inds = torch.stack([i for _, i in best], dim=1)
        on_block(qs, vals, inds)
        if progress is not None:
            progress(q.shape[0])


def converted(
    block: torch.Tensor, device: torch.device, dt: torch.dtype, buf: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``block`` on ``device`` in ``dt``, converted into the reused buffer ``buf`` (grown when
    too small); returns (converted block, buffer). A fresh tensor per block would let glibc's
    dynamic mmap threshold keep every freed block resident (RSS beyond the memory budget)."""
    if block.dtype == dt and block.device == device:
        return block, buf
    if buf is None or buf.shape[0] < block.shape[0]:
        buf = None  # release the old buffer before the new one is allocated
        buf = torch.empty(block.shape, dtype=dt, device=device)
    return buf[: block.shape[0]].copy_(block), buf


def brute_force(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact tiles for any norm and grouping; results (m, S, k) in raw units."""
    p = problem.p
    dt = direct_dtype(problem)
    bq, br = block_sizes(problem, budget, block_size, torch.finfo(dt).bits // 8)
    k, S = problem.k, problem.n_slots
    out_d = np.empty((problem.n_query, S, k))
    out_i = np.empty((problem.n_query, S, k), dtype=np.int64)

    def tile_of(q, qs, r, rows):
        return torch.cdist(
            q.unsqueeze(0), r.unsqueeze(0), p=p, compute_mode="donot_use_mm_for_euclid_dist"
        )[0]

    def on_block(qs, vals, inds):
        out_d[qs : qs + vals.shape[0]] = vals.cpu().numpy()
        out_i[qs : qs + vals.shape[0]] = inds.cpu().numpy()

    _drive(problem, device, bq, br, dt, tile_of, k, merge_block, on_block, progress)
    return out_d, out_i


def l2_candidates(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per (query, slot) the c smallest approximate squared l2 distances by GEMM.

    Returns (candidate indices (m, S, c), pruned; bound (m, S)) where every row of a slot
    not among its candidates has exact squared distance >= bound.
    """
    int8 = int8_gemm_exact(problem, device)
    full32 = problem.queries.dtype != np.float64 and float32_matmul_is_exact(device)
    dt = torch.int16 if int8 else (torch.float32 if full32 else torch.float64)
    unit = U32 if full32 else U64
    bq, br = block_sizes(problem, budget, block_size, 8 if int8 else torch.finfo(dt).bits // 8)
    c = problem.k + EXTRA_CANDIDATES
    sq_q = sq_norms(problem.queries)
    sq_r = sq_norms(problem.reference)
    if int8:  # exact integers: no rounding to bound
        err = np.zeros(problem.n_query)
    else:
        err = gemm_sqdist_error(problem.dim, sq_q, float(sq_r.max()), unit)
    sq_qt = as_tensor(sq_q).to(device=device, dtype=torch.float64 if int8 else dt)
    sq_rt = as_tensor(sq_r).to(device=device, dtype=torch.float64 if int8 else dt)
    m, S = problem.n_query, problem.n_slots
    cand = np.empty((m, S, c), dtype=np.int64)
    bound = np.empty((m, S))

    def tile_of(q, qs, r, rows):
        if int8:
            return _int8_sqdist(q, r)
        return torch.addmm(
            sq_qt[qs : qs + q.shape[0], None] + _take(sq_rt, rows)[None, :], q, r.T, alpha=-2.0
        )

    def merge(run_v, run_i, block, ids):
        return merge_candidates(run_v, run_i, block, ids, c)

    def on_block(qs, vals, inds):
        v = vals.cpu().numpy()
        i = np.where(np.isfinite(v), inds.cpu().numpy(), -1)
        e = err[qs : qs + v.shape[0]]
        cand[qs : qs + v.shape[0]] = prune(i, v, e, problem.k)
        # rows outside the candidates have approx >= the c-th value; +inf if the list is
        # not full (it then holds every row of the slot)
        bound[qs : qs + v.shape[0]] = np.where(
            np.isfinite(v[:, :, -1]), v[:, :, -1] - e[:, None], np.inf
        )

    _drive(problem, device, bq, br, dt, tile_of, c, merge, on_block, progress)
    return cand, bound


#: the int8 GEMM's int32 sums stay exact up to this many features (255**2 * d < 2**31)
INT8_GEMM_MAX_DIM = (2**31 - 1) // 255**2


def int8_gemm_exact(problem: Problem, device: torch.device) -> bool:
    """uint8 l2 on CUDA: exact squared distances from an int8 GEMM with int32 sums (tensor
    cores) of the rows shifted by -128 (a shift leaves differences unchanged). On the CPU
    the float32 candidates are faster (README, benchmark)."""
    return problem.integer and device.type == "cuda" and problem.dim <= INT8_GEMM_MAX_DIM


def _int8_sqdist(q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(a, b) exact squared l2 distances (float64) of uint8-valued int16 rows q, r.

    ``torch._int_mm`` wants more than 16 rows on the left and multiples of 8 for the inner
    and right sizes: the operands are padded with zeros (zero rows are sliced off, zero
    features add nothing to a dot product). Where it still refuses, a float64 GEMM of the
    same integers is exact too (every sum is below 2**53)."""
    qi = (q - 128).to(torch.int8)
    ri = (r - 128).to(torch.int8)
    a, b, d = qi.shape[0], ri.shape[0], qi.shape[1]
    pa, pb, pd = max(17, a) - a, -b % 8, -d % 8
    try:
        qp = torch.nn.functional.pad(qi, (0, pd, 0, pa)) if (pa or pd) else qi
        rp = torch.nn.functional.pad(ri, (0, pd, 0, pb)) if (pb or pd) else ri
        dots = torch._int_mm(qp, rp.T)[:a, :b].to(torch.int64)
    except RuntimeError:
        dots = (qi.to(torch.float64) @ ri.to(torch.float64).T).to(torch.int64)
    sq_q = (qi.to(torch.int64) ** 2).sum(dim=1)
    sq_r = (ri.to(torch.int64) ** 2).sum(dim=1)
    return (sq_q[:, None] + sq_r[None, :] - 2 * dots).to(torch.float64)


def _take(t: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """``t[rows]``: a view when the rows are one increasing run (OTHER_LABEL blocks)."""
    if rows.size and int(rows[-1]) - int(rows[0]) == rows.size - 1 and np.all(np.diff(rows) == 1):
        return t[int(rows[0]) : int(rows[-1]) + 1]
    return t[as_tensor(rows).to(t.device)]


def search(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Exact search of either grouping with the torch backend; results (m, S, k)."""
    if problem.p == 2 and problem.dim > DIRECT_L2_MAX_DIM:
        cand, bound = l2_candidates(problem, device, budget, block_size, progress)
        d, i, n_fb = finish(
            problem, cand, bound, 2.0, lambda sub: brute_force(sub, device, budget, block_size)
        )
        return d, i, {"recomputed": n_fb}
    d, i = brute_force(problem, device, budget, block_size, progress)
    return d, i, {}
