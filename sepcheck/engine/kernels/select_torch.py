"""Keeping the k best (distance, index) pairs per query on torch tiles (the tiling drivers of
:mod:`.torch_backend`), ties to the lowest index."""

from __future__ import annotations

import torch

from .select import column_min


def empty_best(
    n: int, k: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running best of n queries: distances +inf (float64), indices -1, shape (n, k)."""
    d = torch.full((n, k), float("inf"), dtype=torch.float64, device=device)
    i = torch.full((n, k), -1, dtype=torch.int64, device=device)
    return d, i


def far_value(dtype: torch.dtype) -> float | int:
    """The value of an excluded entry in a tile of ``dtype``: +inf, or the largest integer
    (integer tiles hold exact values below it; :func:`as_distance` maps it to +inf)."""
    return float("inf") if dtype.is_floating_point else torch.iinfo(dtype).max


def as_distance(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float64, integer :func:`far_value` entries as +inf."""
    if t.dtype.is_floating_point:
        return t.to(torch.float64)
    far = t == far_value(t.dtype)
    return t.to(torch.float64).masked_fill_(far, float("inf"))


def merge_block(
    best_d: torch.Tensor, best_i: torch.Tensor, block: torch.Tensor, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge a (m, b) block of distances for reference rows ``ids`` (b,), increasing.

    The block is float or exact integers (excluded entries :func:`far_value`). Every index
    already in ``best_i`` is lower than ``ids[0]``, so a stable sort on the distance alone
    breaks ties by the lowest index.
    """
    k = best_d.shape[1]
    if k == 1:
        m, a = _row_min(block)
        m = as_distance(m)
        better = m < best_d[:, 0]
        new_d = torch.where(better, m, best_d[:, 0]).unsqueeze(1)
        new_i = torch.where(better & torch.isfinite(m), ids[a], best_i[:, 0]).unsqueeze(1)
        return new_d, new_i
    if not block.dtype.is_floating_point:
        block, idx = _smallest_integers(block, ids, k)
    else:
        idx = ids.expand_as(block)
    if block.shape[1] > k:
        # only rows' values <= the k-th smallest of the block can enter; keep them in order
        kth = torch.topk(block, k, dim=1, largest=False).values[:, -1:]
        block = torch.where(block <= kth, block, far_value(block.dtype))
    vals = torch.cat([best_d, as_distance(block)], dim=1)
    inds = torch.cat([best_i, idx], dim=1)
    order = torch.sort(vals, dim=1, stable=True).indices[:, :k]
    new_d = torch.gather(vals, 1, order)
    new_i = torch.gather(inds, 1, order)
    new_i = torch.where(torch.isfinite(new_d), new_i, torch.full_like(new_i, -1))
    return new_d, new_i


def _row_min(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row the minimum and its first column. A transposed CPU view (the symmetric
    driver's) is reduced by :func:`column_min` over its contiguous axis, faster than torch's
    reduction of a strided dimension or numpy's argmin."""
    if block.device.type == "cpu" and block.stride(0) == 1 and block.stride(1) != 1 and block.shape[1]:
        m, a = column_min(block.T.numpy())
        return torch.from_numpy(m), torch.from_numpy(a)
    return torch.min(block, dim=1)  # first index among equal minima


def _smallest_integers(
    block: torch.Tensor, ids: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest entries of an integer (m, b) block per row, ties to the lowest column,
    in that order, and their ids. A partial selection picks k entries; where more than k
    entries are <= its k-th value (a tie at the cut) the row is selected again on int64 keys
    value * 2**s + column (s bits hold a column; |value| < 2**31 keeps keys inside int64).
    The k entries are then ordered by the same keys."""
    b = block.shape[1]
    if b <= k:
        return block, ids.expand_as(block)
    shift = max(1, (b - 1).bit_length())
    top = torch.topk(block, k, dim=1, largest=False)
    vals, cols = top.values, top.indices
    tied = torch.nonzero((block <= vals[:, -1:]).sum(dim=1) > k).flatten()
    if tied.numel():
        keys = torch.bitwise_left_shift(block[tied].to(torch.int64), shift)
        keys.bitwise_or_(torch.arange(b, device=block.device))
        sel = torch.topk(keys, k, dim=1, largest=False).values
        vals[tied] = torch.bitwise_right_shift(sel, shift).to(block.dtype)
        cols[tied] = torch.bitwise_and(sel, (1 << shift) - 1)
    keys = torch.bitwise_or(torch.bitwise_left_shift(vals.to(torch.int64), shift), cols)
    keys = torch.sort(keys, dim=1).values
    values = torch.bitwise_right_shift(keys, shift).to(block.dtype)
    return values, ids[torch.bitwise_and(keys, (1 << shift) - 1)]


def merge_candidates(
    run_v: torch.Tensor, run_i: torch.Tensor, block: torch.Tensor, ids: torch.Tensor, c: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running c smallest approximate values (m, c) merged with a (m, b) block of rows
    ``ids``: the block's own c best, then the best c of the 2c columns (no full-tile copies).
    ``run_v`` holds exactly c columns (+inf / -1 padding), so does the result. Ties among
    approximate values may go either way (candidates are reranked exactly)."""
    top = torch.topk(block, min(c, block.shape[1]), dim=1, largest=False)
    vals = torch.cat([run_v, top.values.to(run_v.dtype)], dim=1)
    inds = torch.cat([run_i, ids[top.indices]], dim=1)
    best = torch.topk(vals, c, dim=1, largest=False)
    return best.values, torch.gather(inds, 1, best.indices)


