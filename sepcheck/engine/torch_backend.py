"""The portable backend: blocked torch on CPU or CUDA.

linf, l1 and general p: ``torch.cdist`` on (query block, reference block) tiles, exact
(float32 for uint8 linf/l1, whose integer results float32 holds exactly; float64
otherwise). l2: a float32 GEMM (||q||^2 + ||r||^2 - 2 q.r) finds candidates, which are
reranked exactly with a proven error bound (see :mod:`sepcheck.engine.candidates`).
Memory: one (query block x reference block) tile plus the two converted blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from .candidates import U32, U64, finish, gemm_sqdist_error, prune
from .exact import sq_norms
from .problem import Problem
from .select import empty_best, merge_block

#: extra candidates kept per query on the l2 GEMM path (ties and rounding slack)
L2_EXTRA_CANDIDATES = 15


def block_sizes(problem: Problem, budget: int, block_size: int | None, elem: int) -> tuple[int, int]:
    """(query rows, reference rows) per tile so that the tile and converted blocks fit ``budget``."""
    if block_size is not None:
        return min(block_size, problem.n_query), min(block_size, problem.n_ref)
    d = problem.dim
    bq = min(problem.n_query, 1024)
    # bytes per tile entry: the tile, its mask and merge temporaries (k > 1 sorts)
    per_entry = 48 if problem.k > 1 else 24
    per_ref_row = bq * per_entry + d * elem
    br = max(1, min(problem.n_ref, (budget - bq * d * elem) // max(1, per_ref_row)))
    return bq, int(br)


def _direct_dtype(problem: Problem) -> torch.dtype:
    if problem.integer and (math.isinf(problem.p) or (problem.p == 1 and 255 * problem.dim < 2**24)):
        return torch.float32
    return torch.float64


def brute_force(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact tiles for any norm (l2 without the GEMM expansion)."""
    dt = _direct_dtype(problem)
    elem = torch.finfo(dt).bits // 8
    bq, br = block_sizes(problem, budget, block_size, elem)
    k = problem.k
    out_d = np.empty((problem.n_query, k))
    out_i = np.empty((problem.n_query, k), dtype=np.int64)
    rl = torch.from_numpy(problem.reference_labels).to(device)
    ql = torch.from_numpy(problem.query_labels).to(device)
    p = problem.p
    for qs in range(0, problem.n_query, bq):
        q = torch.from_numpy(problem.queries[qs : qs + bq]).to(device=device, dtype=dt)
        best_d, best_i = empty_best(q.shape[0], k, device)
        for rs in range(0, problem.n_ref, br):
            r = torch.from_numpy(problem.reference[rs : rs + br]).to(device=device, dtype=dt)
            tile = torch.cdist(
                q.unsqueeze(0), r.unsqueeze(0), p=p, compute_mode="donot_use_mm_for_euclid_dist"
            )[0]
            same = ql[qs : qs + bq, None] == rl[None, rs : rs + br]
            tile = tile.masked_fill_(same, float("inf"))
            best_d, best_i = merge_block(best_d, best_i, tile, rs)
        out_d[qs : qs + bq] = best_d.cpu().numpy()
        out_i[qs : qs + bq] = best_i.cpu().numpy()
        if progress is not None:
            progress(q.shape[0])
    return out_d, out_i


def l2_candidates(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query the c smallest approximate squared l2 distances by GEMM.

    Returns (candidate indices (m, c), candidate approx values, bound) where every row not
    among the candidates has exact squared distance >= bound.
    """
    dt = torch.float64 if problem.queries.dtype == np.float64 else torch.float32
    unit = U64 if dt == torch.float64 else U32
    elem = 8 if dt == torch.float64 else 4
    bq, br = block_sizes(problem, budget, block_size, elem)
    c = min(problem.k + L2_EXTRA_CANDIDATES, problem.n_ref)
    sq_q = sq_norms(problem.queries)
    sq_r = sq_norms(problem.reference)
    err = gemm_sqdist_error(problem.dim, sq_q, float(sq_r.max()), unit)
    rl = torch.from_numpy(problem.reference_labels).to(device)
    ql = torch.from_numpy(problem.query_labels).to(device)
    sq_rt = torch.from_numpy(sq_r).to(device=device, dtype=dt)
    cand = np.empty((problem.n_query, c), dtype=np.int64)
    bound = np.empty(problem.n_query)
    prev = _set_highest_precision()
    try:
        for qs in range(0, problem.n_query, bq):
            q = torch.from_numpy(problem.queries[qs : qs + bq]).to(device=device, dtype=dt)
            sq_qt = torch.from_numpy(sq_q[qs : qs + bq]).to(device=device, dtype=dt)
            run_v = torch.full((q.shape[0], 0), float("inf"), dtype=dt, device=device)
            run_i = torch.full((q.shape[0], 0), -1, dtype=torch.int64, device=device)
            for rs in range(0, problem.n_ref, br):
                r = torch.from_numpy(problem.reference[rs : rs + br]).to(device=device, dtype=dt)
                tile = torch.addmm(sq_qt[:, None] + sq_rt[None, rs : rs + br], q, r.T, alpha=-2.0)
                same = ql[qs : qs + bq, None] == rl[None, rs : rs + br]
                tile = tile.masked_fill_(same, float("inf"))
                # the tile's own c best, then merge 2c columns (no full-tile copies)
                top = torch.topk(tile, min(c, tile.shape[1]), dim=1, largest=False)
                vals = torch.cat([run_v, top.values], dim=1)
                inds = torch.cat([run_i, top.indices + rs], dim=1)
                best = torch.topk(vals, min(c, vals.shape[1]), dim=1, largest=False)
                run_v, run_i = best.values, torch.gather(inds, 1, best.indices)
            v = run_v.to(torch.float64).cpu().numpy()
            i = run_i.cpu().numpy()
            i = np.where(np.isfinite(v), i, -1)
            cand[qs : qs + bq] = prune(i, v, err[qs : qs + bq], problem.k)
            # rows outside the candidates have approx >= the c-th value; +inf if the list
            # is not full (it then holds every row of a different label)
            bound[qs : qs + bq] = np.where(np.isfinite(v[:, -1]), v[:, -1] - err[qs : qs + bq], np.inf)
            if progress is not None:
                progress(q.shape[0])
    finally:
        torch.set_float32_matmul_precision(prev)
    return cand, bound


def _set_highest_precision() -> str:
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32 on CUDA: the error bound needs fp32
    return prev


def search(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact k nearest different-label rows with the torch backend."""
    if problem.p == 2:
        cand, bound = l2_candidates(problem, device, budget, block_size, progress)
        d, i, n_fb = finish(
            problem, cand, bound, 2.0, lambda sub: brute_force(sub, device, budget, block_size)
        )
        return d, i, {"recomputed": n_fb}
    d, i = brute_force(problem, device, budget, block_size, progress)
    return d, i, {}
