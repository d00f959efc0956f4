"""Where the reference set lives during a GPU search: resident or streamed.

The reference is uploaded once when it fits the device budget (uint8 stays uint8). Otherwise
it is streamed in blocks: each block is copied into one of two pinned host buffers, sent to
the device on a side CUDA stream, and the compute stream waits on an event, so the copy of
block b+1 overlaps the kernels of block b and the host never waits for the kernels.
Budgets come from ``torch.cuda.mem_get_info``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ...core.errors import SepcheckError
from .torch_backend import as_tensor

#: share of the free device memory a search may use when no budget is given
FREE_SHARE = 0.85
#: share of the budget the resident reference may take (the rest: queries and outputs)
RESIDENT_SHARE = 0.6
#: share of the budget each of the two streamed reference buffers may take
STREAM_SHARE = 0.2


def device_budget(device: torch.device, memory_budget: int | None) -> int:
    """Bytes a search may allocate on ``device``: ``memory_budget`` capped by what is free."""
    if device.type != "cuda":
        return int(memory_budget) if memory_budget is not None else 1 << 30
    free, _total = torch.cuda.mem_get_info(device)
    if memory_budget is None:
        return int(free * FREE_SHARE)
    return int(min(int(memory_budget), free))


@dataclass(frozen=True)
class Plan:
    """Rows per reference block and per query block, and whether the reference is resident."""

    ref_rows: int
    query_rows: int
    resident: bool


def plan_blocks(
    n_ref: int, n_query: int, ref_row_bytes: int, query_row_bytes: int, budget: int,
    block_size: int | None, stream: bool,
) -> Plan:
    """Choose resident or streamed reference blocks and the query block size."""
    ref_bytes = n_ref * ref_row_bytes
    if block_size is not None:
        rows = max(1, int(block_size))
        return Plan(min(rows, n_ref), min(rows, n_query), rows >= n_ref)
    if ref_bytes <= RESIDENT_SHARE * budget:
        free = budget - ref_bytes
        return Plan(n_ref, _rows(free, query_row_bytes, n_query), True)
    if not stream:
        raise SepcheckError(
            f"the reference set ({ref_bytes / 2**30:.2f} GiB) does not fit the GPU budget "
            f"({budget / 2**30:.2f} GiB) and streaming is off: pass stream=True, a larger "
            "memory_budget, or fewer rows"
        )
    ref_rows = max(1, min(n_ref, int(STREAM_SHARE * budget) // max(1, ref_row_bytes)))
    free = budget - 2 * ref_rows * ref_row_bytes
    return Plan(ref_rows, _rows(free, query_row_bytes, n_query), False)


def _rows(free: float, row_bytes: int, n: int) -> int:
    rows = int(free // max(1, row_bytes))
    if rows < 1:
        raise SepcheckError("the GPU budget leaves no room for queries: pass a larger memory_budget or block_size")
    return min(n, rows)


def reference_blocks(
    reference: np.ndarray, rows: int, device: torch.device
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, block on device)`` for consecutive blocks of ``rows`` reference rows.

    One block (the whole reference) is uploaded once. Several blocks on CUDA go through two
    pinned host buffers and a side stream; the compute stream waits on an event per block,
    and a buffer is refilled only after the kernels that read it (an event on the compute
    stream) are done, so blocks are consumed as soon as the caller has enqueued its work.
    """
    n = reference.shape[0]
    if rows >= n:
        yield 0, as_tensor(np.ascontiguousarray(reference)).to(device)
        return
    if device.type != "cuda":
        for start in range(0, n, rows):
            yield start, as_tensor(np.ascontiguousarray(reference[start : start + rows]))
        return
    shape = (rows, *reference.shape[1:])
    dtype = as_tensor(reference[:1]).dtype
    pinned = [torch.empty(shape, dtype=dtype, pin_memory=True) for _ in range(2)]
    on_dev = [torch.empty(shape, dtype=dtype, device=device) for _ in range(2)]
    copied = [torch.cuda.Event() for _ in range(2)]
    consumed = [torch.cuda.Event() for _ in range(2)]
    used = [False, False]
    side = torch.cuda.Stream(device)
    compute = torch.cuda.current_stream(device)
    for b, start in enumerate(range(0, n, rows)):
        s = b % 2
        stop = min(n, start + rows)
        if used[s]:
            copied[s].synchronize()  # the pinned buffer's previous copy has left the host
        pinned[s][: stop - start].numpy()[...] = reference[start:stop]
        with torch.cuda.stream(side):
            if used[s]:
                side.wait_event(consumed[s])
            on_dev[s][: stop - start].copy_(pinned[s][: stop - start], non_blocking=True)
            copied[s].record(side)
        compute.wait_event(copied[s])
        yield start, on_dev[s][: stop - start]
        consumed[s].record(compute)
        used[s] = True
