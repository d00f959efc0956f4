"""The projection-bound exact l2 search in torch operations, for CUDA (and the CPU, where the
tests check it against the oracle).

The same bounds and margins as :mod:`sepcheck.engine.backends.projection` (the directions, projected
rows and margins come from its ``_prepare``), arranged for a GPU: per query block the GEMM
bound of every pair in one tile, the ``k + EXTRA_CANDIDATES`` rows of smallest bound per
slot by ``topk`` and their exact distances, whose k-th best ``U`` sets each slot's limit;
then every other pair under the limit (``nonzero``), refined over all stored directions,
and the rest given exact distances (uint8: int32 sums, exact; float data: float64), merged
by (distance, index): ties to the lowest index. Unlike the CPU kernel the limit does not
tighten during the block (a superset of its survivors: the same answer).

Memory on the device: the projected rows, the reference in its own dtype (uint8 stays
uint8), one (query block x reference) float64 tile and the survivors of one block, gathered
in chunks of :data:`PAIR_CHUNK` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..problem import Problem
from .projection import EXTRA_CANDIDATES, _prepare, query_block, resolve_dims
from .torch_backend import as_tensor

#: survivor pairs whose rows are gathered at once for their exact distances
PAIR_CHUNK = 1 << 16


def search(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    dims: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact l2 search of either grouping on ``device``; results (m, S, k): squared
    distances in raw units and indices, and ``extra`` (as :func:`projection.search`'s)."""
    g, M = resolve_dims(problem, dims)
    prep = _prepare(problem, g, M, 1.0)
    n, k, S = problem.n_ref, problem.k, problem.n_slots
    c = min(n, k + EXTRA_CANDIDATES)
    on = lambda a: as_tensor(np.ascontiguousarray(a)).to(device)  # noqa: E731
    Rg, Qg = prep.Rg.to(device).double(), prep.Qg.to(device).double()
    Rp, Qp = on(prep.Rp).double(), on(prep.Qp).double()
    sq_q, gerr, slack = on(prep.sq_q), on(prep.gerr), on(prep.slack)
    order = on(prep.order)
    sizes = np.diff(prep.bounds)
    slot_of = on(np.repeat(prep.group_slot, sizes))  # slot of each sorted position
    label_of = on(prep.pair_labels if prep.pair_check else np.repeat(prep.group_label, sizes))
    R = on(problem.reference)
    wide = torch.int32 if problem.integer else torch.float64
    bq = query_block(problem, budget, block_size, 24)  # the tile, its mask and float64 copies
    out_d = np.empty((problem.n_query, S, k))
    out_i = np.empty((problem.n_query, S, k), dtype=np.int64)
    refined = exact = 0
    for qs in range(0, problem.n_query, bq):
        qe = min(problem.n_query, qs + bq)
        b = qe - qs
        Q = on(problem.queries[qs:qe])
        v = Qg[qs:qe] @ Rg.T  # GEMM bound less sq_q (see projection._Prepared)
        if not problem.by_class:
            ql = on(problem.query_labels[qs:qe])
            v.masked_fill_(label_of[None, :] == ql[:, None], math.inf)
        # candidates: per slot the c smallest bounds (sorted positions; -1 where fewer)
        cand = torch.full((b, S, c), -1, dtype=torch.int64, device=device)
        for s, (lo, hi) in enumerate(_slot_ranges(prep, S)):
            if hi > lo:
                top = torch.topk(v[:, lo:hi], min(c, hi - lo), dim=1, largest=False)
                pos = top.indices + lo
                cand[:, s, : pos.shape[1]] = torch.where(torch.isfinite(top.values), pos, -1)
        qi, si, ti = torch.nonzero(cand >= 0, as_tuple=True)
        cj = cand[qi, si, ti]
        cd = _sqdist(Q, R, qi, order[cj], wide)
        exact += int(cj.numel())
        best_d, best_i = _merge(
            np.full((b, S, k), np.inf), np.full((b, S, k), -1, dtype=np.int64),
            qi.cpu().numpy(), si.cpu().numpy(), cd.cpu().numpy(), order[cj].cpu().numpy(),
        )
        u = torch.from_numpy(best_d[:, :, -1]).to(device)  # (b, S) k-th best squared
        sig = prep.sigma * torch.sqrt(u) * (1.0 + prep.rel) + slack[qs:qe, None]
        lim = torch.where(torch.isfinite(u), sig * sig * (1.0 + 1e-12), math.inf)
        gate = lim + gerr[qs:qe, None] - sq_q[qs:qe, None]
        keep = (v <= gate[:, slot_of]) & torch.isfinite(v)  # own label: +inf, never kept
        keep[qi, cj] = False  # candidates are done
        pi, pj = torch.nonzero(keep, as_tuple=True)
        refined += int(pi.numel())
        parts = []
        for a in range(0, pi.numel(), PAIR_CHUNK):
            i_, j_ = pi[a : a + PAIR_CHUNK], pj[a : a + PAIR_CHUNK]
            proj_sq = ((Qp[qs:qe][i_] - Rp[j_]) ** 2).sum(dim=1)
            ok = proj_sq <= lim[i_, slot_of[j_]]
            i_, j_ = i_[ok], j_[ok]
            parts.append((i_, slot_of[j_], _sqdist(Q, R, i_, order[j_], wide), order[j_]))
        if parts:
            ei, es, ed, ej = (torch.cat(t).cpu().numpy() for t in zip(*parts, strict=True))
            exact += ei.size
            best_d, best_i = _merge(best_d, best_i, ei, es, ed, ej)
        out_d[qs:qe], out_i[qs:qe] = best_d, best_i
        if progress is not None:
            progress(b)
    extra = {
        "l2_path": "projection", "projection_dims": [g, M],
        "pairs_bounded": n * problem.n_query, "pairs_refined": refined, "pairs_exact": exact,
    }
    return out_d, out_i, extra


def _slot_ranges(prep, S: int) -> list[tuple[int, int]]:
    """Sorted positions of each slot: its group (BY_CLASS) or everything (OTHER_LABEL)."""
    if S == 1:
        return [(0, int(prep.bounds[-1]))]
    ranges = [(0, 0)] * S
    for grp, s in enumerate(prep.group_slot):
        ranges[int(s)] = (int(prep.bounds[grp]), int(prep.bounds[grp + 1]))
    return ranges


def _sqdist(Q: torch.Tensor, R: torch.Tensor, qi: torch.Tensor, rows: torch.Tensor, wide) -> torch.Tensor:
    """Exact squared distances (float64) of pairs (Q[qi], R[rows]): uint8 in int32 (exact
    while d * 255**2 < 2**31, else int64), float data in float64; in chunks."""
    if wide == torch.int32 and Q.shape[1] * 255**2 >= 2**31:
        wide = torch.int64
    out = []
    for a in range(0, qi.numel(), PAIR_CHUNK):
        diff = Q[qi[a : a + PAIR_CHUNK]].to(wide) - R[rows[a : a + PAIR_CHUNK]].to(wide)
        out.append((diff * diff).sum(dim=1).to(torch.float64))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64, device=Q.device)


def _merge(
    bd: np.ndarray, bi: np.ndarray, rows: np.ndarray, slots: np.ndarray, dist: np.ndarray,
    cols: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best per (query, slot) of the running ``bd``/``bi`` (m, S, k) and the extra
    pairs (block ``rows``, ``slots``, squared ``dist``, reference ``cols``), by (distance,
    index); pairs already held are not repeated by the callers."""
    m, S, k = bd.shape
    q0, s0, t0 = np.nonzero(np.isfinite(bd))
    q = np.concatenate([q0, rows])
    s = np.concatenate([s0, slots])
    d = np.concatenate([bd[q0, s0, t0], dist])
    j = np.concatenate([bi[q0, s0, t0], cols])
    order = np.lexsort((j, d, s, q))
    q, s, d, j = q[order], s[order], d[order], j[order]
    group = q * S + s
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else group
    rank = np.arange(group.size) - np.repeat(first, np.diff(np.r_[first, group.size]))
    keep = rank < k
    out_d = np.full((m, S, k), np.inf)
    out_i = np.full((m, S, k), -1, dtype=np.int64)
    out_d[q[keep], s[keep], rank[keep]] = d[keep]
    out_i[q[keep], s[keep], rank[keep]] = j[keep]
    return out_d, out_i
