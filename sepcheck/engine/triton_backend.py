"""The Triton backend: exact linf / l1 (and uint8 l2) k-nearest search on the GPU (any k, both
groupings).

:func:`search_triton` runs the tile kernel of :mod:`sepcheck.engine.triton_kernels` over
(query block x reference block) pairs. The reference stays on the device (resident, or
streamed through pinned memory, :mod:`sepcheck.engine.gpu_data`); each launch writes per
(query, reference chunk) k-best lists, which are merged into a running best on the device
(no host synchronisation per block) and copied back once per query block.

Pruned search (``prune='prefix'``, the default for uint8 linf): rows are used in a fixed
random feature order, packed four bytes per word; each query gets a threshold (per slot with
the per-class grouping) that its k-th best cannot exceed: the exact distances of its nearest
rows in l2 (an int8 GEMM), tightened after phase 1 by the exact distances of the rows with the
lowest prefix bounds. Phase 1 keeps the (query, row) pairs whose partial distance over the
first PW words is <= the threshold, in a dense list; phase 2 extends the list over the next
words in rounds of doubling length and keeps the pairs still <= it. The survivors carry exact
distances and contain every row of the k best (ties included), which a lexicographic
(distance, index) selection picks. ``prune='tiles'`` / ``'none'`` run the brute-force tile kernel.

Exactness: uint8 is computed in integer-exact lanes (int32, float16 for linf, or packed
``vabsdiff4``), float input in float64; selection is lexicographic on (distance, index), so
ties go to the lowest index. On the CPU it runs only in triton's interpreter
(``TRITON_INTERPRET=1``), which the tests use to check it against the float64 oracle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np

from ..core.errors import SepcheckError

Lanes = Literal["auto", "i32", "f16", "packed", "dot"]
LANES = ("auto", "i32", "f16", "packed", "dot")

#: (BQ, BR, BD, num_warps) per lanes on CUDA (BD: features, or packed words, unrolled per step)
GPU_TILES = {"i32": (64, 64, 4, 8), "f16": (64, 64, 8, 8), "packed": (64, 64, 4, 8), "f64": (32, 32, 4, 4),
             "dot": (64, 64, 64, 4)}
#: uint8 l2 (lanes 'dot'): the shifted rows' squared norms and dot products are int32
DOT_MAX_DIM = 2**31 // 128**2 - 1
#: tiles in the interpreter (each op is a numpy call: few large tiles are fastest)
INTERPRETER_TILES = (16, 32, 16, 1)
#: pruned search ("prefix"): (BQ, BR, PW, num_warps) of phase 1 (PW: packed words of the
#: prefix bound, 4 features each) on CUDA and in the interpreter
PREFIX_TILES = (64, 64, 16, 8)
INTERPRETER_PREFIX_TILES = (16, 32, 4, 1)
#: phase 2: (pairs per program, words per step, num_warps) on CUDA and in the interpreter
EXTEND_TILES = (128, 16, 4)
INTERPRETER_EXTEND_TILES = (1024, 64, 1)
#: rows are padded with zero bytes to a multiple of this many packed words (zeros add nothing)
WORD_MULTIPLE = 16
#: seed of the fixed random feature order of the pruned search
FEATURE_SEED = 20201207
#: candidates per query (beyond k) whose exact distances seed the threshold, and per slot
SEED_EXTRA, SEED_PER_SLOT = 3, 2
#: per query (per slot), listed pairs of lowest prefix bound whose exact distances tighten the
#: threshold after phase 1 (0: off)
REFINE_CANDIDATES = 64
#: bytes of one block of seed scores (queries x reference rows, int32)
SEED_BYTES = 1 << 29
#: the seed GEMM of the other-label grouping uses at most this many reference rows (evenly
#: strided): any rows give a valid threshold, and the refine stage tightens it after phase 1
SEED_ROWS = 8192
#: prune='auto' on many queries first runs the prefix search on PROBE_QUERIES of them; when
#: more than PREFIX_MAX_SURVIVAL of their pairs survive the prefix bound (data where a short
#: prefix says little, e.g. MNIST's many zero pixels), the brute-force tiles run instead
PROBE_QUERIES = 2048
PREFIX_MAX_SURVIVAL = 0.25
#: sentinel threshold: keeps every pair (no candidate gave a bound)
NO_THRESHOLD = 2**31 - 1

Prune = Literal["auto", "prefix", "tiles", "none"]
PRUNE = ("auto", "prefix", "tiles", "none")

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
    from ..core.devices import cuda_available, resolve_device

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


def _lanes(lanes: str, integer: bool, p_inf: bool, dev, p_l2: bool = False) -> str:
    if lanes not in LANES:
        raise SepcheckError(f"unknown lanes {lanes!r}: use one of {', '.join(LANES)}")
    if p_l2:
        if not integer:
            raise SepcheckError("backend 'triton' computes l2 for uint8 rows only (an exact int8 GEMM): "
                                "use backend 'torch' for float rows")
        if lanes not in ("auto", "dot"):
            raise SepcheckError(f"lanes {lanes!r} is for linf / l1: uint8 l2 runs as an int8 GEMM (lanes='dot')")
        return "dot"
    if lanes == "dot":
        raise SepcheckError("lanes 'dot' is the uint8 l2 GEMM: use it with p=2")
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
    prune: Prune | bool = "auto",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """k nearest reference rows per query (other label), or the nearest row of every slot.

    Parameters
    ----------
    queries, query_labels : (m, d) uint8 or float array, (m,) int
    reference, reference_labels : (n, d) array of the same kind, (n,) int
    p : float
        ``math.inf`` (linf), 1.0 (l1) or 2.0 (l2, uint8 rows only: an int8 GEMM, not
        timed on a GPU yet; ``backend='auto'`` keeps the torch path for l2).
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
    lanes : 'auto', 'i32', 'f16', 'packed' or 'dot'
        Arithmetic for uint8 ('auto': packed on CUDA; in the interpreter f16 for linf, i32
        for l1; 'dot' for l2); 'packed' is PTX ``vabsdiff4`` on CUDA and the same word
        arithmetic in plain Triton in the interpreter. Float always runs in float64.
    tiles : (BQ, BR, BD, num_warps) or None
        Kernel tile sizes (powers of two); default per lanes and device. With
        ``prune='prefix'``: (BQ, BR, PW, num_warps) of phase 1, PW packed words (4 features
        each) in the prefix bound.
    prune : 'auto', 'prefix', 'tiles', 'none' (or a bool: True is 'auto', False 'none')
        'prefix' (uint8 only, packed words): a fixed random feature order, a threshold per
        query (per slot) seeded by the exact distances of its nearest rows in l2 (an int8
        GEMM), then (query, row) pairs whose partial distance over a prefix of the features
        exceeds it are dropped, and the others extended in rounds, densely, until they exceed
        it or are complete. 'tiles': the brute-force tile kernel that skips tiles whose
        row-sum bound cannot beat any query's k-th best (uint8 only). 'none': brute force.
        'auto': 'prefix' for uint8 linf, 'tiles' for uint8 l1, 'none' for float.

    Returns
    -------
    dist : float64 (m, S, k)
        Raw units (uint8: integers 0..255 per feature; l2: the square root of the exact
        integer squared distance), ascending; +inf where missing.
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
    p_l2 = p == 2
    if not (p_inf or p == 1 or p_l2):
        raise SepcheckError(f"backend 'triton' computes linf, l1 and uint8 l2 only, not p={p:g}: use backend 'torch'")
    k = int(k)
    if k < 1:
        raise SepcheckError(f"k={k} is invalid: give k >= 1")
    dev = _check_device(device)
    Q, R, ql, rl, integer = _inputs(queries, query_labels, reference, reference_labels)
    m, d = Q.shape
    n = R.shape[0]
    lane = _lanes(lanes, integer, p_inf, dev, p_l2)
    if p_l2 and d > DOT_MAX_DIM:
        raise SepcheckError(f"backend 'triton' computes uint8 l2 for at most {DOT_MAX_DIM} features (int32 "
                            f"sums), not {d}: use backend 'torch'")
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
    mode = _prune_mode(prune, integer, p_inf, lanes, p_l2)
    if mode == "prefix" and _auto(prune) and m > 2 * PROBE_QUERIES:
        _, _, probe = _search_prefix(Q[:PROBE_QUERIES], ql[:PROBE_QUERIES], R, rl, p_inf=p_inf, k=k, S=S,
                                     bounds=bounds, perm=perm, dev=dev, memory_budget=memory_budget,
                                     block_size=block_size, progress=None, stream=stream, tiles=tiles)
        if probe["pairs_prefix"] > PREFIX_MAX_SURVIVAL * PROBE_QUERIES * n * S:
            mode = "tiles"
    if mode == "prefix":
        return _search_prefix(Q, ql, R, rl, p_inf=p_inf, k=k, S=S, bounds=bounds, perm=perm, dev=dev,
                              memory_budget=memory_budget, block_size=block_size, progress=progress,
                              stream=stream, tiles=tiles)
    out_f64 = not integer or 255 * d >= 2**24 or p_l2
    kp = 1 << (k - 1).bit_length()
    if tiles is None:
        tiles = INTERPRETER_TILES if dev.type == "cpu" else GPU_TILES[lane]
    BQ, BR, BD, warps = (int(t) for t in tiles)
    if lane == "dot":
        # BD features per tl.dot step (a power of two; rows zero-padded to a multiple of it);
        # the compiled tl.dot wants every tile side >= 16
        BD = 1 << max(0, BD.bit_length() - 1)
        if dev.type == "cuda":
            BQ, BR, BD = max(BQ, 16), max(BR, 16), max(BD, 32)
    else:
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
    info = {"backend": "triton", "prune": mode, "lanes": lane, "tiles": (BQ, BR, BD, warps), "resident": plan.resident,
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
        q_dev = _prepare(as_tensor(Q[qs:qe]).to(dev), lane, BD if lane == "dot" else 4)
        ql_dev = as_tensor(ql[qs:qe]).to(dev)
        qsum = _row_sums(as_tensor(Q[qs:qe]).to(dev) if lane == "packed" else q_dev, integer, lane)
        run_d = torch.full((mq, S * k), math.inf, dtype=ddt, device=dev)
        run_i = torch.full((mq, S * k), triton_kernels.EMPTY_INDEX, dtype=torch.int64, device=dev)
        n_qtiles = -(-mq // BQ)
        for b0, block in reference_blocks(R, plan.ref_rows, dev):
            blocks += 1
            b1 = b0 + block.shape[0]
            if dev.type == "cpu":
                block = block.clone()  # the interpreter cannot map views of numpy memory
            r_dev = _prepare(block, lane, BD if lane == "dot" else 4)
            rsum = _row_sums(r_dev if lane == "dot" else block, integer, lane)
            rl_block = rl_dev[b0:b1].clone() if dev.type == "cpu" else rl_dev[b0:b1]
            C, chunk, starts, stops, slot_of_chunk = tables[b0, n_qtiles]
            if C == 0:
                continue
            part_d = torch.empty((mq, C, k), dtype=ddt, device=dev)
            part_i = torch.empty((mq, C, k), dtype=torch.int32, device=dev)
            kernel[(n_qtiles, C)](
                q_dev, r_dev, ql_dev, rl_block, qsum, rsum,
                starts, stops, part_d, part_i,
                mq, d, q_dev.stride(0), r_dev.stride(0), C,
                P_INF=p_inf, K=k, KP=kp, MASK_LABELS=not by_class, PRUNE=mode == "tiles",
                LANES={"i32": 0, "f16": 1, "f64": 2, "packed": 3, "dot": 4}[lane], OUT_F64=out_f64, ASM=dev.type == "cuda",
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
        if p_l2:
            dd = np.sqrt(dd)  # of exact integers: correctly rounded, as the oracle's
        ii = run_i.cpu().numpy().reshape(mq, S, k)
        ii = np.where(np.isfinite(dd), ii, -1)
        _store_block(dist_out, idx_out, qs, dd, ii, perm, progress)
    info["blocks"] = blocks
    return dist_out, idx_out, info


def _store_block(dist_out, idx_out, qs: int, dd, ii, perm, progress):
    """Write the (mq, S, k) results of the query block starting at ``qs``, rows mapped back
    through the slot sort ``perm``; report the block to ``progress``."""
    if perm is not None:
        ii = np.where(ii >= 0, perm[np.maximum(ii, 0)], -1)
    dist_out[qs : qs + dd.shape[0]] = dd
    idx_out[qs : qs + dd.shape[0]] = ii
    if progress is not None:
        progress(dd.shape[0])


def _pow2_tiles(rows: int, br: int) -> int:
    """Chunk length as a constexpr: a power-of-two number of tiles (few recompilations;
    tiles past a chunk's end are skipped)."""
    return br * (1 << (-(-rows // br) - 1).bit_length())


def _prepare(x, lane: str, multiple: int = 4):
    """The device rows as the kernel reads them: packed lanes view 4 bytes as one int32 (rows
    zero-padded to a multiple of 4 bytes); 'dot' shifts uint8 by -128 to int8 (``x ^ 0x80``)
    and zero-pads the rows to a multiple of ``multiple`` features (zeros add nothing to a
    dot product or a squared norm)."""
    import torch

    if lane == "dot":
        x = torch.bitwise_xor(x, 128).view(torch.int8)
        pad = (-x.shape[1]) % multiple
        return (torch.nn.functional.pad(x, (0, pad)) if pad else x).contiguous()
    if lane != "packed":
        return x.contiguous()
    pad = (-x.shape[1]) % multiple
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.contiguous().view(torch.int32)


def _row_sums(x, integer: bool, lane: str = ""):
    """Integer row sums for the pruning bound (exact: 255 * d < 2**31); for lanes 'dot' the
    squared norms of the shifted int8 rows (exact: 128**2 * d < 2**31); a dummy for floats."""
    import torch

    if not integer:
        return torch.zeros(1, dtype=torch.int32, device=x.device)
    if lane == "dot":
        x32 = x.to(torch.int32)
        return (x32 * x32).sum(dim=1, dtype=torch.int32)
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


def _auto(prune) -> bool:
    """True when the caller left the pruning mode to the backend."""
    return prune == "auto" or (isinstance(prune, bool | np.bool_) and bool(prune))


def _prune_mode(prune, integer: bool, p_inf: bool, lanes: str, p_l2: bool = False) -> str:
    """The pruning mode to run ('prefix', 'tiles' or 'none') for ``prune`` and the data
    (uint8 l2, the int8 GEMM, always runs unpruned)."""
    if isinstance(prune, bool | np.bool_):
        prune = "auto" if prune else "none"
    if prune not in PRUNE:
        raise SepcheckError(f"unknown prune {prune!r}: use one of {', '.join(PRUNE)}")
    if p_l2:
        if prune not in ("auto", "none"):
            raise SepcheckError(f"prune {prune!r} bounds linf / l1: uint8 l2 runs unpruned (prune='none' or 'auto')")
        return "none"
    if prune == "auto":
        if integer and p_inf and lanes in ("auto", "packed"):
            return "prefix"
        return "tiles" if integer else "none"
    if prune != "none" and not integer:
        raise SepcheckError(f"prune {prune!r} is for uint8 data: use prune='none' (or 'auto') for float input")
    if prune == "prefix" and lanes not in ("auto", "packed"):
        raise SepcheckError(f"prune 'prefix' computes on packed words: use lanes='packed' (or 'auto'), not {lanes!r}")
    return prune


def _search_prefix(Q, ql, R, rl, *, p_inf, k, S, bounds, perm, dev, memory_budget, block_size, progress,
                   stream, tiles):
    """The pruned search (``prune='prefix'``) of :func:`search_triton` on uint8 rows (reference
    sorted by slot when S > 1); same returns."""
    import torch

    from . import triton_kernels
    from .gpu_data import device_budget, plan_blocks, reference_blocks

    m, d = Q.shape
    n = R.shape[0]
    by_class = perm is not None
    if tiles is None:
        tiles = INTERPRETER_PREFIX_TILES if dev.type == "cpu" else PREFIX_TILES
    BQ, BR, PW, warps = (int(t) for t in tiles)
    BP, BW, warps2 = INTERPRETER_EXTEND_TILES if dev.type == "cpu" else EXTEND_TILES
    words = -(-d // (4 * WORD_MULTIPLE)) * WORD_MULTIPLE
    PW = max(1, min(PW, words))
    budget = device_budget(dev, memory_budget)
    # a reference row: raw + permuted + packed copies; a query row: the same, its thresholds
    plan = plan_blocks(n, m, 3 * d + 4 * words, 3 * d + 4 * words + 8 * S, budget, block_size, stream)
    # pair lists (3 int32 per pair, two lists alive) for an eighth of the pairs; positions are int32
    free = max(0, budget - (1 if plan.resident else 2) * plan.ref_rows * (3 * d + 4 * words))
    q_rows = min(plan.query_rows, max(BQ, int(free // 2 // max(1, 3 * plan.ref_rows))), max(1, 2**30 // plan.ref_rows))
    info = {"backend": "triton", "prune": "prefix", "lanes": "packed", "tiles": (BQ, BR, PW, warps),
            "resident": plan.resident, "ref_rows": plan.ref_rows, "query_rows": q_rows, "device": str(dev),
            "pairs_prefix": 0, "pairs_complete": 0, "stage_seconds": dict.fromkeys(STAGES, 0.0)}
    dist_out = np.full((m, S, k), np.inf)
    idx_out = np.full((m, S, k), -1, dtype=np.int64)
    if m == 0 or n == 0:
        info["blocks"] = 0
        return dist_out, idx_out, info
    phase1, phase2 = triton_kernels.prefix_kernels()
    asm = dev.type == "cuda"
    fperm = torch.from_numpy(np.random.default_rng(FEATURE_SEED).permutation(d)).to(dev)
    rl_dev = torch.from_numpy(rl).to(dev)
    slot_dev = torch.from_numpy(np.repeat(np.arange(S, dtype=np.int32), np.diff(bounds))).to(dev)
    blocks = 0
    clock = _StageClock(dev, info["stage_seconds"])
    for qs in range(0, m, q_rows):
        qe = min(m, qs + q_rows)
        mq = qe - qs
        q_raw = torch.from_numpy(Q[qs:qe]).to(dev)
        q_dev = _packed_rows(q_raw, fperm)
        ql_dev = torch.from_numpy(ql[qs:qe]).to(dev)
        thr = None
        found = []
        for b0, block in reference_blocks(R, plan.ref_rows, dev):
            blocks += 1
            nb = block.shape[0]
            rl_block = rl_dev[b0 : b0 + nb].clone()
            slot_block = slot_dev[b0 : b0 + nb].clone()
            if thr is None:  # any rows give an upper bound: the first block seeds every block
                step = 1 if by_class else max(1, nb // SEED_ROWS)
                thr = _seed_thresholds(q_raw, ql_dev, block[::step], rl_block[::step], bounds - b0,
                                       p_inf=p_inf, k=k, by_class=by_class)
            clock("seed")
            r_dev = _packed_rows(block, fperm)
            count = torch.zeros(1, dtype=torch.int32, device=dev)
            cap = max(1024, mq * nb // 8)
            while True:
                pq, pr, pd = (torch.empty(cap, dtype=torch.int32, device=dev) for _ in range(3))
                phase1[(-(-mq // BQ), -(-nb // BR))](
                    q_dev, r_dev, ql_dev, rl_block, slot_block, thr, count, pq, pr, pd,
                    mq, nb, q_dev.stride(0), r_dev.stride(0), S, cap,
                    P_INF=p_inf, BY_SLOT=by_class, ASM=asm, BQ=BQ, BR=BR, PW=PW, num_warps=warps,
                )
                n_in = int(count.item())
                if n_in <= cap:
                    break
                cap = n_in  # rare: more pairs than room; run again with enough
                count.zero_()
            info["pairs_prefix"] += n_in
            clock("prefix")

            def extend(pq, pr, pd, n_in, thr, q_dev=q_dev, r_dev=r_dev, slot_block=slot_block, count=count):
                """Extend the listed pairs from word PW to the end in rounds of doubling
                length, keeping those still <= their threshold (densely)."""
                w0, step = PW, max(PW, BW)
                while w0 < words and n_in:
                    w1 = min(words, w0 + step)
                    count.zero_()
                    nq, nr, nd = (torch.empty(n_in, dtype=torch.int32, device=dev) for _ in range(3))
                    phase2[(-(-n_in // BP),)](
                        q_dev, r_dev, slot_block, thr, pq, pr, pd, count, nq, nr, nd,
                        n_in, q_dev.stride(0), r_dev.stride(0), S, w0, w1,
                        P_INF=p_inf, BY_SLOT=by_class, ASM=asm, BP=BP, BW=BW, STEPS=-(-(w1 - w0) // BW),
                        num_warps=warps2,
                    )
                    n_in = int(count.item())
                    pq, pr, pd = nq, nr, nd
                    w0, step = w1, 2 * step
                return pq, pr, pd, n_in

            if REFINE_CANDIDATES and n_in:
                # the listed pairs of smallest prefix bound are near rows: their exact distances
                # tighten the thresholds before the bulk of the extension
                group = pq[:n_in].long() * S + slot_block[pr[:n_in]].long() if by_class else pq[:n_in].long()
                take = _lowest_bounds(group, pd[:n_in], mq * S, REFINE_CANDIDATES, 255 * (1 if p_inf else 4 * PW))
                cq, cr, cd = pq[:n_in][take].contiguous(), pr[:n_in][take].contiguous(), pd[:n_in][take].contiguous()
                cq, cr, cd, n_c = extend(cq, cr, cd, cq.numel(), thr)
                if n_c:
                    best = _select([(cq[:n_c].long(), cr[:n_c].long() + b0, cd[:n_c].long())], mq, S, k,
                                   slot_dev if by_class else None)[0][:, k - 1]
                    best = torch.where(torch.isfinite(best), best, NO_THRESHOLD).to(torch.int32).view(mq, S)
                    thr = torch.minimum(thr, best)
            clock("refine")
            pq, pr, pd, n_in = extend(pq, pr, pd, n_in, thr)
            clock("extend")
            info["pairs_complete"] += n_in
            found.append((pq[:n_in].long(), pr[:n_in].long() + b0, pd[:n_in].long()))
        dd, ii = _select(found, mq, S, k, slot_dev if by_class else None)
        dd = dd.cpu().numpy().reshape(mq, S, k)
        ii = ii.cpu().numpy().reshape(mq, S, k)
        clock("select")
        _store_block(dist_out, idx_out, qs, dd, ii, perm, progress)
    info["blocks"] = blocks
    return dist_out, idx_out, info


#: stages of the pruned search timed in ``info["stage_seconds"]`` (the seed stage includes the
#: uploads and the permuted copies of the rows)
STAGES = ("seed", "prefix", "refine", "extend", "select")


class _StageClock:
    """Adds the wall time since the previous call to ``seconds[stage]``, after waiting for the
    device (one synchronisation per stage and block: the stages sync anyway to size lists)."""

    def __init__(self, dev, seconds: dict):
        self.dev, self.seconds, self.last = dev, seconds, time.perf_counter()

    def __call__(self, stage: str) -> None:
        import torch

        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        now = time.perf_counter()
        self.seconds[stage] += now - self.last
        self.last = now


def _lowest_bounds(group, bound, n_groups: int, want: int, top: int):
    """Mask of the listed pairs whose bound is among the ``want`` lowest of their group (all
    pairs at the cut-off value: a coarse histogram of the bounds 0..``top`` per group)."""
    import torch

    bins = 256
    while bins > 8 and n_groups * bins * 8 > SEED_BYTES:
        bins //= 2
    shift = max(0, (top // bins).bit_length())
    b = bound.long() >> shift
    hist = torch.bincount(group * bins + b, minlength=n_groups * bins).view(n_groups, bins)
    cut = (hist.cumsum(dim=1) < want).sum(dim=1)  # first bin reaching `want` pairs
    return b <= cut[group]


def _packed_rows(x, fperm):
    """uint8 rows (device) in the feature order ``fperm``, zero-padded to a multiple of
    ``WORD_MULTIPLE`` words and viewed as int32 words."""
    return _prepare(x[:, fperm], "packed", 4 * WORD_MULTIPLE)


def _seed_thresholds(q, ql, r, rl, bounds, *, p_inf: bool, k: int, by_class: bool):
    """Per query (per slot) an exact distance that the k-th best (the slot's best) cannot
    exceed: the k-th smallest exact distance among the query's nearest rows in l2 (int8
    GEMM of the centred bytes; any candidates would do, near ones give a tight threshold).
    int32 (mq, S); ``NO_THRESHOLD`` where fewer candidates exist."""
    import torch

    from .torch_backend import int8_tile

    mq, d = q.shape
    nb = r.shape[0]
    S = bounds.size - 1
    thr = torch.full((mq, S), NO_THRESHOLD, dtype=torch.int32, device=q.device)
    b = torch.bitwise_xor(r, 128).view(torch.int8)  # rows shifted by -128, once
    rsq = (b.to(torch.int32) ** 2).sum(dim=1, dtype=torch.int32)
    sub = max(1, SEED_BYTES // (4 * nb))
    for s0 in range(0, mq, sub):
        s1 = min(mq, s0 + sub)
        scores = int8_tile(q[s0:s1], b, rsq)  # ||q - r||^2 - ||q||^2, exact int32
        if by_class:
            for s in range(S):
                lo, hi = max(0, int(bounds[s])), min(nb, int(bounds[s + 1]))
                if hi > lo:
                    cand = torch.topk(scores[:, lo:hi], min(SEED_PER_SLOT, hi - lo), dim=1, largest=False).indices + lo
                    thr[s0:s1, s] = _exact(q[s0:s1], r, cand, p_inf).amin(dim=1).to(torch.int32)
            continue
        scores.masked_fill_(ql[s0:s1, None] == rl[None, :], torch.iinfo(torch.int32).max)
        c = min(nb, k + SEED_EXTRA)
        if c < k:
            continue
        cand = torch.topk(scores, c, dim=1, largest=False).indices
        dist = _exact(q[s0:s1], r, cand, p_inf)
        dist = torch.where(ql[s0:s1, None] != rl[cand], dist, NO_THRESHOLD)
        thr[s0:s1, 0] = torch.sort(dist, dim=1).values[:, k - 1].to(torch.int32)
    return thr


def _exact(q, r, cand, p_inf: bool):
    """Exact distances (int32, (mq, c)) of each query to its candidate rows ``cand``."""
    import torch

    diff = (q[:, None, :].to(torch.int16) - r[cand].to(torch.int16)).abs()
    return diff.amax(dim=2).to(torch.int32) if p_inf else diff.sum(dim=2, dtype=torch.int32)


def _select(found, mq: int, S: int, k: int, slot_of_row):
    """The k lexicographically smallest (distance, row) per query (per slot) among the found
    pairs: float64 (mq * S, k) distances (+inf where missing) and int64 rows (-1)."""
    import torch

    q = torch.cat([f[0] for f in found])
    r = torch.cat([f[1] for f in found])
    dist = torch.cat([f[2] for f in found])
    group = q * S + slot_of_row[r].long() if slot_of_row is not None else q
    for key in range(3):  # stable sorts: by group, then distance, then row
        order = torch.sort((r, dist, group)[key], stable=True).indices
        r, dist, group = r[order], dist[order], group[order]
    counts = torch.bincount(group, minlength=mq * S)
    rank = torch.arange(group.numel(), device=group.device) - (torch.cumsum(counts, 0) - counts)[group]
    keep = rank < k
    out_d = torch.full((mq * S, k), math.inf, dtype=torch.float64, device=group.device)
    out_i = torch.full((mq * S, k), -1, dtype=torch.int64, device=group.device)
    out_d[group[keep], rank[keep]] = dist[keep].to(torch.float64)
    out_i[group[keep], rank[keep]] = r[keep]
    return out_d, out_i
