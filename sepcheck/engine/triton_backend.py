"""The Triton backend: exact linf / l1 k-nearest search on the GPU (any k, both groupings).

:func:`search_triton` runs the tile kernel of :mod:`sepcheck.engine.triton_kernels` over
(query block x reference block) pairs. The reference stays on the device (resident, or
streamed through pinned memory, :mod:`sepcheck.engine.gpu_data`); each launch writes per
(query, reference chunk) k-best lists, which are merged into a running best on the device
(no host synchronisation per block) and copied back once per query block.

Exactness: uint8 is computed in integer-exact lanes (int32, float16 for linf, or packed
``vabsdiff4``), float input in float64; selection is lexicographic on (distance, index), so
ties go to the lowest index. On the CPU it runs only in triton's interpreter
(``TRITON_INTERPRET=1``), which the tests use to check it against the float64 oracle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np

from ..errors import SepcheckError

Lanes = Literal["auto", "i32", "f16", "packed"]
LANES = ("auto", "i32", "f16", "packed")

#: (BQ, BR, BD, num_warps) per lanes on CUDA (BD: features, or packed words, unrolled per step)
GPU_TILES = {"i32": (64, 64, 4, 8), "f16": (64, 64, 8, 8), "packed": (64, 64, 4, 8), "f64": (32, 32, 4, 4)}
#: tiles in the interpreter (each op is a numpy call: few large tiles are fastest)
INTERPRETER_TILES = (16, 32, 16, 1)
#: programs to keep the GPU busy: reference chunks are split until (query tiles x chunks) reaches
#: this (one chunk per slot in the interpreter, which runs programs one by one)
MIN_PROGRAMS = 4 * 132


def _check_device(device: str):
    import torch

    from . import triton_kernels

    dev = str(device).strip().lower()
    if dev == "cpu":
        if not triton_kernels.interpreting():
            raise SepcheckError(
                "backend 'triton' needs a CUDA GPU; on the CPU it runs only in triton's interpreter: "
                "set TRITON_INTERPRET=1 (slow, for tests) or use backend 'numba' / 'torch'"
            )
        if not triton_kernels.interpreter_loaded():
            raise SepcheckError(
                "triton was imported before TRITON_INTERPRET=1 was set: set it in the environment "
                "before python starts (or before the first import of triton)"
            )
        return torch.device("cpu")
    if triton_kernels.interpreting():
        raise SepcheckError("TRITON_INTERPRET=1 runs triton on the CPU: use device='cpu' or unset TRITON_INTERPRET")
    from ..devices import cuda_available, resolve_device

    if not cuda_available():
        raise SepcheckError(
            "backend 'triton' needs a CUDA GPU and torch sees none: use backend 'numba' or 'torch' "
            "on the CPU (or device='cpu' with TRITON_INTERPRET=1, slow, for tests)"
        )
    return torch.device(resolve_device(dev))


def _inputs(queries, query_labels, reference, reference_labels):
    Q = np.asarray(queries)
    R = np.asarray(reference)
    if Q.ndim != 2 or R.ndim != 2 or Q.shape[1] != R.shape[1]:
        raise SepcheckError(f"queries {Q.shape} and reference {R.shape} must be 2-D with the same width")
    if Q.dtype == np.uint8 and R.dtype == np.uint8:
        integer = True
    elif Q.dtype.kind == "f" and R.dtype.kind == "f" and Q.dtype.itemsize >= 4 and R.dtype.itemsize >= 4:
        integer = False
        if Q.dtype != R.dtype:
            Q, R = Q.astype(np.float64), R.astype(np.float64)
    else:
        raise SepcheckError(
            f"backend 'triton' takes uint8 or float32/float64 rows of one kind, got {Q.dtype} and "
            f"{R.dtype}: convert both to uint8 or both to float"
        )
    ql = np.asarray(query_labels, dtype=np.int64).reshape(-1)
    rl = np.asarray(reference_labels, dtype=np.int64).reshape(-1)
    if ql.size != Q.shape[0] or rl.size != R.shape[0]:
        raise SepcheckError("one label per row is needed for queries and reference")
    return np.ascontiguousarray(Q), np.ascontiguousarray(R), ql, rl, integer


def _lanes(lanes: str, integer: bool, p_inf: bool, dev) -> str:
    if lanes not in LANES:
        raise SepcheckError(f"unknown lanes {lanes!r}: use one of {', '.join(LANES)}")
    if not integer:
        if lanes not in ("auto",):
            raise SepcheckError(f"lanes {lanes!r} is for uint8 data: float input runs in float64 (lanes='auto')")
        return "f64"
    if lanes == "auto":  # packed VABSDIFF4 on CUDA; in the interpreter the pure-Triton lanes
        if dev.type == "cuda":
            return "packed"
        return "f16" if p_inf else "i32"
    if lanes == "f16" and not p_inf:
        raise SepcheckError("lanes 'f16' is exact for linf only: use 'i32' or 'packed' for l1")
    return lanes


def search_triton(
    queries,
    query_labels,
    reference,
    reference_labels,
    *,
    p: float,
    k: int,
    slot_of_row: np.ndarray | None = None,
    n_slots: int = 1,
    device: str = "cuda",
    memory_budget: int | None = None,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    stream: bool = True,
    lanes: Lanes = "auto",
    tiles: tuple[int, int, int, int] | None = None,
    prune: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """k nearest reference rows per query (other label), or the nearest row of every slot.

    Parameters
    ----------
    queries, query_labels : (m, d) uint8 or float array, (m,) int
    reference, reference_labels : (n, d) array of the same kind, (n,) int
    p : float
        ``math.inf`` (linf) or 1.0 (l1).
    k : int
        Neighbours per query (grouping "other label"); 1 with ``slot_of_row``.
    slot_of_row : (n,) int64 array or None
        None: a row counts for query i iff its label differs (S = 1). Otherwise codes
        0..n_slots-1: the nearest row of every slot per query, whatever the labels.
    n_slots : int
        S, the number of slots.
    device : str
        'cuda' / 'cuda:N', or 'cpu' under ``TRITON_INTERPRET=1``.
    memory_budget : int or None
        Device bytes the search may use (default: 85% of ``torch.cuda.mem_get_info`` free).
    block_size : int or None
        Rows per reference block and per query block (forces streaming when < n).
    progress : callable or None
        Receives the number of queries finished after each query block.
    stream : bool
        False: a reference larger than the budget is an error instead of being streamed.
    lanes : 'auto', 'i32', 'f16' or 'packed'
        Arithmetic for uint8 ('auto': packed on CUDA; in the interpreter f16 for linf, i32
        for l1); 'packed' is PTX ``vabsdiff4`` on CUDA and the same word arithmetic in plain
        Triton in the interpreter. Float always runs in float64.
    tiles : (BQ, BR, BD, num_warps) or None
        Kernel tile sizes (powers of two); default per lanes and device.
    prune : bool
        Skip tiles whose row-sum lower bound cannot beat any query's k-th best (uint8 only).

    Returns
    -------
    dist : float64 (m, S, k)
        Raw units (uint8: integers 0..255 per feature), ascending; +inf where missing.
    idx : int64 (m, S, k)
        Reference rows; ties to the lowest index; -1 where missing.
    info : dict
        lanes, tiles, resident, reference and query block rows, blocks.
    """
    import torch

    from . import triton_kernels
    from .gpu_data import device_budget, plan_blocks, reference_blocks
    from .torch_backend import as_tensor

    p_inf = math.isinf(p)
    if not (p_inf or p == 1):
        raise SepcheckError(f"backend 'triton' computes linf and l1 only, not p={p:g}: use backend 'torch'")
    k = int(k)
    if k < 1:
        raise SepcheckError(f"k={k} is invalid: give k >= 1")
    dev = _check_device(device)
    Q, R, ql, rl, integer = _inputs(queries, query_labels, reference, reference_labels)
    m, d = Q.shape
    n = R.shape[0]
    lane = _lanes(lanes, integer, p_inf, dev)
    by_class = slot_of_row is not None
    S = int(n_slots) if by_class else 1
    perm = None
    if by_class:
        if k != 1:
            raise SepcheckError("the per-class grouping finds one row per class: use k=1")
        slots = np.asarray(slot_of_row, dtype=np.int64).reshape(-1)
        if slots.size != n or (n and (slots.min() < 0 or slots.max() >= S)):
            raise SepcheckError(f"slot_of_row must give one code in 0..{S - 1} per reference row")
        perm = np.argsort(slots, kind="stable")
        R = R[perm]
        rl = rl[perm]
        bounds = np.searchsorted(slots[perm], np.arange(S + 1))
    else:
        bounds = np.array([0, n])
    out_f64 = not integer or 255 * d >= 2**24
    kp = 1 << (k - 1).bit_length()
    if tiles is None:
        tiles = INTERPRETER_TILES if dev.type == "cpu" else GPU_TILES[lane]
    BQ, BR, BD, warps = (int(t) for t in tiles)
    # BD features (packed: words) per unrolled step must divide the row width: no masks
    width = -(-d // 4) if lane == "packed" else d
    BD = math.gcd(width, 1 << max(0, BD.bit_length() - 1))
    elem = R.dtype.itemsize
    budget = device_budget(dev, memory_budget)
    # per query row: the row, its partial lists (chunks x k x 12 bytes) and the running best
    query_row_bytes = d * elem + 64 * kp * 12 + S * k * 24
    plan = plan_blocks(n, m, d * elem, query_row_bytes, budget, block_size, stream)

    dist_out = np.full((m, S, k), np.inf)
    idx_out = np.full((m, S, k), -1, dtype=np.int64)
    info = {"backend": "triton", "lanes": lane, "tiles": (BQ, BR, BD, warps), "resident": plan.resident,
            "ref_rows": plan.ref_rows, "query_rows": plan.query_rows, "device": str(dev)}
    if m == 0 or n == 0:
        return dist_out, idx_out, info
    kernel = triton_kernels.tile_kernel()
    # chunk tables of every (reference block, query tiles) pair, uploaded before the loops so
    # that no host-to-device copy from pageable memory (a possible sync) happens per block
    min_programs = 1 if dev.type == "cpu" else MIN_PROGRAMS
    tables = {}
    for qs in range(0, m, plan.query_rows):
        n_qt = -(-(min(m, qs + plan.query_rows) - qs) // BQ)
        for b0 in range(0, n, plan.ref_rows):
            if (b0, n_qt) not in tables:
                st, sp, sl = _chunks(bounds, b0, min(n, b0 + plan.ref_rows), n_qt, BR, min_programs)
                tables[b0, n_qt] = (st.size, _pow2_tiles(int((sp - st).max()), BR) if st.size else 0,
                                    as_tensor(st).to(dev), as_tensor(sp).to(dev),
                                    as_tensor(sl).to(dev))
    rl_dev = as_tensor(rl).to(dev)
    ddt = torch.float64 if out_f64 else torch.float32
    blocks = 0
    for qs in range(0, m, plan.query_rows):
        qe = min(m, qs + plan.query_rows)
        mq = qe - qs
        q_dev = _prepare(as_tensor(Q[qs:qe]).to(dev), lane)
        ql_dev = as_tensor(ql[qs:qe]).to(dev)
        qsum = _row_sums(as_tensor(Q[qs:qe]).to(dev) if lane == "packed" else q_dev, integer)
        run_d = torch.full((mq, S * k), math.inf, dtype=ddt, device=dev)
        run_i = torch.full((mq, S * k), triton_kernels.EMPTY_INDEX, dtype=torch.int64, device=dev)
        n_qtiles = -(-mq // BQ)
        for b0, block in reference_blocks(R, plan.ref_rows, dev):
            blocks += 1
            b1 = b0 + block.shape[0]
            if dev.type == "cpu":
                block = block.clone()  # the interpreter cannot map views of numpy memory
            rsum = _row_sums(block, integer)
            rl_block = rl_dev[b0:b1].clone() if dev.type == "cpu" else rl_dev[b0:b1]
            r_dev = _prepare(block, lane)
            C, chunk, starts, stops, slot_of_chunk = tables[b0, n_qtiles]
            if C == 0:
                continue
            part_d = torch.empty((mq, C, k), dtype=ddt, device=dev)
            part_i = torch.empty((mq, C, k), dtype=torch.int32, device=dev)
            kernel[(n_qtiles, C)](
                q_dev, r_dev, ql_dev, rl_block, qsum, rsum,
                starts, stops, part_d, part_i,
                mq, d, q_dev.stride(0), r_dev.stride(0), C,
                P_INF=p_inf, K=k, KP=kp, MASK_LABELS=not by_class, PRUNE=prune and integer,
                LANES={"i32": 0, "f16": 1, "f64": 2, "packed": 3}[lane], OUT_F64=out_f64, ASM=dev.type == "cuda",
                BQ=BQ, BR=BR, BD=BD, NF=q_dev.shape[1], CHUNK=chunk,
                num_warps=warps,
            )
            part_i = part_i.to(torch.int64) + b0
            if by_class:
                run_d, run_i = _merge_slots(run_d, run_i, part_d[:, :, 0], part_i[:, :, 0],
                                            slot_of_chunk)
            else:
                run_d, run_i = _merge_topk(run_d, run_i, part_d.reshape(mq, C * k), part_i.reshape(mq, C * k), k)
        dd = run_d.to(torch.float64).cpu().numpy().reshape(mq, S, k)
        ii = run_i.cpu().numpy().reshape(mq, S, k)
        ii = np.where(np.isfinite(dd), ii, -1)
        if perm is not None:
            ii = np.where(ii >= 0, perm[np.maximum(ii, 0)], -1)
        dist_out[qs:qe] = dd
        idx_out[qs:qe] = ii
        if progress is not None:
            progress(mq)
    info["blocks"] = blocks
    return dist_out, idx_out, info


def _pow2_tiles(rows: int, br: int) -> int:
    """Chunk length as a constexpr: a power-of-two number of tiles (few recompilations;
    tiles past a chunk's end are skipped)."""
    return br * (1 << (-(-rows // br) - 1).bit_length())


def _prepare(x, lane: str):
    """The device rows as the kernel reads them: packed lanes view 4 bytes as one int32."""
    import torch

    if lane != "packed":
        return x.contiguous()
    d = x.shape[1]
    pad = (-d) % 4
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.contiguous().view(torch.int32)


def _row_sums(x, integer: bool):
    """Integer row sums for the pruning bound (exact: 255 * d < 2**31); a dummy for floats."""
    import torch

    if not integer:
        return torch.zeros(1, dtype=torch.int32, device=x.device)
    return x.sum(dim=1, dtype=torch.int32)


def _chunks(bounds: np.ndarray, b0: int, b1: int, n_qtiles: int, br: int, min_programs: int):
    """Reference chunks [start, stop) relative to the block, none straddling a slot
    boundary, split so that query tiles x chunks reaches ``min_programs``."""
    segs = []
    for s in range(bounds.size - 1):
        lo, hi = max(bounds[s], b0), min(bounds[s + 1], b1)
        if hi > lo:
            segs.append((s, lo - b0, hi - b0))
    total = sum(hi - lo for _, lo, hi in segs)
    want = max(1, -(-min_programs // max(1, n_qtiles)))
    rows = max(br, -(-total // want) if total else br)
    rows = -(-rows // br) * br
    starts, stops, slot = [], [], []
    for s, lo, hi in segs:
        for a in range(lo, hi, rows):
            starts.append(a)
            stops.append(min(hi, a + rows))
            slot.append(s)
    return (np.asarray(starts, dtype=np.int32), np.asarray(stops, dtype=np.int32),
            np.asarray(slot, dtype=np.int64))


def _merge_topk(run_d, run_i, new_d, new_i, k: int):
    """The k lexicographically smallest (distance, index) pairs of both lists, on device."""
    import torch

    cand_d = torch.cat([run_d, new_d.to(run_d.dtype)], dim=1)
    cand_i = torch.cat([run_i, new_i], dim=1)
    order = torch.sort(cand_i, dim=1, stable=True).indices
    cand_d = torch.gather(cand_d, 1, order)
    cand_i = torch.gather(cand_i, 1, order)
    order = torch.sort(cand_d, dim=1, stable=True).indices[:, :k]
    return torch.gather(cand_d, 1, order), torch.gather(cand_i, 1, order)


def _merge_slots(run_d, run_i, new_d, new_i, slot_of_chunk):
    """Per slot the smaller (distance, index) of the running best and the chunks' bests."""
    import torch

    sl = slot_of_chunk[None, :].expand_as(new_d)
    best = run_d.scatter_reduce(1, sl, new_d.to(run_d.dtype), reduce="amin", include_self=True)
    keep = torch.where(run_d == best, run_i, torch.full_like(run_i, 2**62))
    cand = torch.where(new_d.to(run_d.dtype) == torch.gather(best, 1, sl), new_i, torch.full_like(new_i, 2**62))
    return best, keep.scatter_reduce(1, sl, cand, reduce="amin", include_self=True)
