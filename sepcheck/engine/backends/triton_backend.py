"""The Triton backend: exact linf / l1 (and uint8 l2) k-nearest search on the GPU (any k, both
groupings).

:func:`search_triton` runs the tile kernel of :mod:`sepcheck.engine.kernels.triton_kernels` over
(query block x reference block) pairs. The reference stays on the device (resident, or
streamed through pinned memory, :mod:`sepcheck.engine.backends.gpu_data`); each launch writes per
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
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import numpy as np

from ...core.errors import SepcheckError

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

    from ..kernels import triton_kernels

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
    from ...core.devices import cuda_available, resolve_device

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


#: kernel codes of the lanes (``triton_kernels.LANES_*``)
LANE_CODES = {"i32": 0, "f16": 1, "f64": 2, "packed": 3, "dot": 4}


@dataclass(frozen=True, eq=False)
class _Problem:
    """A validated search: contiguous rows (uint8, or float of one dtype), int64 labels, the
    reference and its labels sorted by slot when there are slots, the metric and the lanes."""

    Q: np.ndarray
    ql: np.ndarray
    R: np.ndarray
    rl: np.ndarray
    integer: bool
    p_inf: bool
    p_l2: bool
    k: int
    #: number of slots (1: grouping "other label")
    S: int
    #: (S + 1,) slot boundaries in the sorted reference (``[0, n]`` without slots)
    bounds: np.ndarray
    #: the slot sort of the reference (sorted row i is row ``perm[i]``); None without slots
    perm: np.ndarray | None
    #: torch device
    dev: Any
    #: resolved lanes: 'i32', 'f16', 'f64', 'packed' or 'dot'
    lane: str

    @property
    def by_class(self) -> bool:
        return self.perm is not None


@dataclass(frozen=True)
class _Limits:
    """The caller's memory settings (``memory_budget``, ``block_size``, ``stream``)."""

    memory_budget: int | None
    block_size: int | None
    stream: bool

    def blocks(self, dev, n: int, m: int, ref_row_bytes: int, query_row_bytes: int):
        """The device budget (bytes) and the :class:`~sepcheck.engine.backends.gpu_data.Plan` of n
        reference and m query rows."""
        from .gpu_data import device_budget, plan_blocks

        budget = device_budget(dev, self.memory_budget)
        return budget, plan_blocks(n, m, ref_row_bytes, query_row_bytes, budget, self.block_size, self.stream)


@dataclass(frozen=True)
class _TilePlan:
    """Tile sizes and blocks of the brute-force tile search."""

    #: 'tiles' (the row-sum bound skips tiles) or 'none'
    mode: str
    BQ: int
    BR: int
    #: features (packed: words) per unrolled step; 'dot': per tl.dot step
    BD: int
    warps: int
    #: k rounded up to a power of two (width of the kernel's running list)
    kp: int
    #: distances in float64 (float rows, l2, or l1 sums that may pass 2**24), else float32
    out_f64: bool
    ref_rows: int
    query_rows: int
    resident: bool

    @property
    def out_dtype(self):
        import torch

        return torch.float64 if self.out_f64 else torch.float32


class _ChunkTable(NamedTuple):
    """Reference chunks of one (reference block, query tiles) pair, on the device."""

    #: number of chunks C (0: the block holds no row that counts)
    C: int
    #: chunk length as the kernel's constexpr (:func:`_pow2_tiles`)
    chunk: int
    starts: Any
    stops: Any
    #: slot of each chunk (int64)
    slot_of_chunk: Any


class _Rows(NamedTuple):
    """A block of rows as the tile kernel reads them: rows, int64 labels, int32 row sums."""

    rows: Any
    labels: Any
    sums: Any


def _problem(queries, query_labels, reference, reference_labels, *, p: float, k: int, slot_of_row,
             n_slots: int, device: str, lanes: str) -> _Problem:
    """Validate the arguments of :func:`search_triton` (one-line :class:`SepcheckError` on bad
    input) and sort the reference by slot."""
    p_inf = math.isinf(p)
    p_l2 = p == 2
    if not (p_inf or p == 1 or p_l2):
        raise SepcheckError(f"backend 'triton' computes linf, l1 and uint8 l2 only, not p={p:g}: use backend 'torch'")
    k = int(k)
    if k < 1:
        raise SepcheckError(f"k={k} is invalid: give k >= 1")
    dev = _check_device(device)
    Q, R, ql, rl, integer = _inputs(queries, query_labels, reference, reference_labels)
    d = Q.shape[1]
    lane = _lanes(lanes, integer, p_inf, dev, p_l2)
    if p_l2 and d > DOT_MAX_DIM:
        raise SepcheckError(f"backend 'triton' computes uint8 l2 for at most {DOT_MAX_DIM} features (int32 "
                            f"sums), not {d}: use backend 'torch'")
    S, bounds, perm = _slot_order(slot_of_row, n_slots, R.shape[0], k)
    if perm is not None:
        R = R[perm]
        rl = rl[perm]
    return _Problem(Q, ql, R, rl, integer, p_inf, p_l2, k, S, bounds, perm, dev, lane)


def _slot_order(slot_of_row, n_slots: int, n: int, k: int):
    """(S, slot boundaries in the sorted reference, the stable slot sort or None)."""
    if slot_of_row is None:
        return 1, np.array([0, n]), None
    S = int(n_slots)
    if k != 1:
        raise SepcheckError("the per-class grouping finds one row per class: use k=1")
    slots = np.asarray(slot_of_row, dtype=np.int64).reshape(-1)
    if slots.size != n or (n and (slots.min() < 0 or slots.max() >= S)):
        raise SepcheckError(f"slot_of_row must give one code in 0..{S - 1} per reference row")
    perm = np.argsort(slots, kind="stable")
    return S, np.searchsorted(slots[perm], np.arange(S + 1)), perm


def search_triton(
    queries, query_labels, reference, reference_labels, *, p: float, k: int,
    slot_of_row: np.ndarray | None = None, n_slots: int = 1, device: str = "cuda",
    memory_budget: int | None = None, block_size: int | None = None,
    progress: Callable[[int], None] | None = None, stream: bool = True, lanes: Lanes = "auto",
    tiles: tuple[int, int, int, int] | None = None, prune: Prune | bool = "auto",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """k nearest reference rows per query (other label), or the nearest row of every slot.

    Parameters
    ----------
    queries, query_labels : (m, d) uint8 or float array, (m,) int
    reference, reference_labels : (n, d) array of the same kind, (n,) int
    p : float
        ``math.inf`` (linf), 1.0 (l1) or 2.0 (l2, uint8 rows only: an exact int8 GEMM;
        ``backend='auto'`` keeps the torch path for l2).
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
    job = _problem(queries, query_labels, reference, reference_labels, p=p, k=k, slot_of_row=slot_of_row,
                   n_slots=n_slots, device=device, lanes=lanes)
    limits = _Limits(memory_budget, block_size, stream)
    mode = _prune_mode(prune, job.integer, job.p_inf, lanes, job.p_l2)
    if (mode == "prefix" and _auto(prune) and job.Q.shape[0] > 2 * PROBE_QUERIES
            and _prefix_says_little(job, limits, tiles)):
        mode = "tiles"
    if mode == "prefix":
        return _search_prefix(job, limits, tiles, progress)
    return _search_tiles(job, mode, limits, tiles, progress)


def _search_tiles(job: _Problem, mode: str, limits: _Limits, tiles, progress):
    """The brute-force tile search of :func:`search_triton` (prune 'tiles' or 'none'); same
    returns. Per query block, each reference block is one kernel launch whose per-chunk k
    best are merged into the running best on the device; copied back once per query block."""
    from ..kernels import triton_kernels
    from .torch_backend import as_tensor

    plan = _plan_tiles(job, mode, limits, tiles)
    m, n = job.Q.shape[0], job.R.shape[0]
    dist_out = np.full((m, job.S, job.k), np.inf)
    idx_out = np.full((m, job.S, job.k), -1, dtype=np.int64)
    info = {"backend": "triton", "prune": mode, "lanes": job.lane, "tiles": (plan.BQ, plan.BR, plan.BD, plan.warps),
            "resident": plan.resident, "ref_rows": plan.ref_rows, "query_rows": plan.query_rows, "device": str(job.dev)}
    if m == 0 or n == 0:
        return dist_out, idx_out, info
    kernel = triton_kernels.tile_kernel()
    tables = _chunk_tables(job, plan)
    rl_dev = as_tensor(job.rl).to(job.dev)
    blocks = 0
    for qs in range(0, m, plan.query_rows):
        qe = min(m, qs + plan.query_rows)
        run_d, run_i, n_blocks = _tile_query_block(job, plan, kernel, tables, rl_dev, qs, qe)
        blocks += n_blocks
        dd, ii = _collect_tiles(job, run_d, run_i)
        _store_block(dist_out, idx_out, qs, dd, ii, job.perm, progress)
    info["blocks"] = blocks
    return dist_out, idx_out, info


def _plan_tiles(job: _Problem, mode: str, limits: _Limits, tiles) -> _TilePlan:
    """Tile sizes (``tiles`` or the defaults of the lanes and device, adjusted to the row width)
    and the reference / query blocks that fit the budget."""
    d = job.Q.shape[1]
    out_f64 = not job.integer or 255 * d >= 2**24 or job.p_l2
    kp = 1 << (job.k - 1).bit_length()
    if tiles is None:
        tiles = INTERPRETER_TILES if job.dev.type == "cpu" else GPU_TILES[job.lane]
    BQ, BR, BD, warps = (int(t) for t in tiles)
    if job.lane == "dot":
        # BD features per tl.dot step (a power of two; rows zero-padded to a multiple of it);
        # the compiled tl.dot wants every tile side >= 16
        BD = 1 << max(0, BD.bit_length() - 1)
        if job.dev.type == "cuda":
            BQ, BR, BD = max(BQ, 16), max(BR, 16), max(BD, 32)
    else:
        # BD features (packed: words) per unrolled step must divide the row width: no masks
        width = -(-d // 4) if job.lane == "packed" else d
        BD = math.gcd(width, 1 << max(0, BD.bit_length() - 1))
    elem = job.R.dtype.itemsize
    # per query row: the row, its partial lists (chunks x k x 12 bytes) and the running best
    query_row_bytes = d * elem + 64 * kp * 12 + job.S * job.k * 24
    _, blocks = limits.blocks(job.dev, job.R.shape[0], job.Q.shape[0], d * elem, query_row_bytes)
    return _TilePlan(mode, BQ, BR, BD, warps, kp, out_f64, blocks.ref_rows, blocks.query_rows, blocks.resident)


def _chunk_tables(job: _Problem, plan: _TilePlan) -> dict[tuple[int, int], _ChunkTable]:
    """The chunk table of every (reference block start, query tiles) pair, uploaded before the
    loops so that no host-to-device copy from pageable memory (a possible sync) happens per
    block."""
    from .torch_backend import as_tensor

    m, n = job.Q.shape[0], job.R.shape[0]
    min_programs = 1 if job.dev.type == "cpu" else MIN_PROGRAMS
    tables = {}
    for qs in range(0, m, plan.query_rows):
        n_qt = -(-(min(m, qs + plan.query_rows) - qs) // plan.BQ)
        for b0 in range(0, n, plan.ref_rows):
            if (b0, n_qt) not in tables:
                st, sp, sl = _chunks(job.bounds, b0, min(n, b0 + plan.ref_rows), n_qt, plan.BR, min_programs)
                tables[b0, n_qt] = _ChunkTable(st.size, _pow2_tiles(int((sp - st).max()), plan.BR) if st.size else 0,
                                               as_tensor(st).to(job.dev), as_tensor(sp).to(job.dev),
                                               as_tensor(sl).to(job.dev))
    return tables


def _tile_query_block(job: _Problem, plan: _TilePlan, kernel, tables, rl_dev, qs: int, qe: int):
    """Queries ``[qs, qe)`` against every reference block: the running best, (mq, S * k)
    distances (the plan's output dtype) and int64 rows of the sorted reference
    (``EMPTY_INDEX`` where missing), and the number of reference blocks."""
    import torch

    from ..kernels import triton_kernels
    from .gpu_data import reference_blocks

    mq = qe - qs
    q = _query_rows(job, plan, qs, qe)
    run_d = torch.full((mq, job.S * job.k), math.inf, dtype=plan.out_dtype, device=job.dev)
    run_i = torch.full((mq, job.S * job.k), triton_kernels.EMPTY_INDEX, dtype=torch.int64, device=job.dev)
    n_qtiles = -(-mq // plan.BQ)
    blocks = 0
    for b0, block in reference_blocks(job.R, plan.ref_rows, job.dev):
        blocks += 1
        r = _reference_rows(job, plan, rl_dev, b0, block)
        table = tables[b0, n_qtiles]
        if table.C == 0:
            continue
        part_d, part_i = _launch_tiles(job, plan, kernel, q, r, table)
        part_i = part_i.to(torch.int64) + b0
        if job.by_class:
            run_d, run_i = _merge_slots(run_d, run_i, part_d[:, :, 0], part_i[:, :, 0], table.slot_of_chunk)
        else:
            width = table.C * job.k
            run_d, run_i = _merge_topk(run_d, run_i, part_d.reshape(mq, width), part_i.reshape(mq, width), job.k)
    return run_d, run_i, blocks


def _query_rows(job: _Problem, plan: _TilePlan, qs: int, qe: int) -> _Rows:
    """Queries ``[qs, qe)`` on the device as the tile kernel reads them."""
    from .torch_backend import as_tensor

    lane = job.lane
    q_dev = _prepare(as_tensor(job.Q[qs:qe]).to(job.dev), lane, plan.BD if lane == "dot" else 4)
    ql_dev = as_tensor(job.ql[qs:qe]).to(job.dev)
    qsum = _row_sums(as_tensor(job.Q[qs:qe]).to(job.dev) if lane == "packed" else q_dev, job.integer, lane)
    return _Rows(q_dev, ql_dev, qsum)


def _reference_rows(job: _Problem, plan: _TilePlan, rl_dev, b0: int, block) -> _Rows:
    """The reference block starting at ``b0`` (on the device) as the tile kernel reads it."""
    b1 = b0 + block.shape[0]
    cpu = job.dev.type == "cpu"
    if cpu:
        block = block.clone()  # the interpreter cannot map views of numpy memory
    r_dev = _prepare(block, job.lane, plan.BD if job.lane == "dot" else 4)
    rsum = _row_sums(r_dev if job.lane == "dot" else block, job.integer, job.lane)
    rl_block = rl_dev[b0:b1].clone() if cpu else rl_dev[b0:b1]
    return _Rows(r_dev, rl_block, rsum)


def _launch_tiles(job: _Problem, plan: _TilePlan, kernel, q: _Rows, r: _Rows, table: _ChunkTable):
    """One launch of the tile kernel (query tiles x chunks): the k best per query and chunk,
    (mq, C, k) distances (the plan's output dtype) and int32 rows relative to the block."""
    import torch

    mq, C = q.rows.shape[0], table.C
    part_d = torch.empty((mq, C, job.k), dtype=plan.out_dtype, device=job.dev)
    part_i = torch.empty((mq, C, job.k), dtype=torch.int32, device=job.dev)
    kernel[(-(-mq // plan.BQ), C)](
        q.rows, r.rows, q.labels, r.labels, q.sums, r.sums,
        table.starts, table.stops, part_d, part_i,
        mq, job.Q.shape[1], q.rows.stride(0), r.rows.stride(0), C,
        P_INF=job.p_inf, K=job.k, KP=plan.kp, MASK_LABELS=not job.by_class, PRUNE=plan.mode == "tiles",
        LANES=LANE_CODES[job.lane], OUT_F64=plan.out_f64, ASM=job.dev.type == "cuda",
        BQ=plan.BQ, BR=plan.BR, BD=plan.BD, NF=q.rows.shape[1], CHUNK=table.chunk,
        num_warps=plan.warps,
    )
    return part_d, part_i


def _collect_tiles(job: _Problem, run_d, run_i):
    """The running best of a query block on the host: float64 (mq, S, k) distances (l2: the
    square root of the exact squared distance) and int64 rows of the sorted reference (-1
    where missing)."""
    import torch

    mq = run_d.shape[0]
    dd = run_d.to(torch.float64).cpu().numpy().reshape(mq, job.S, job.k)
    if job.p_l2:
        dd = np.sqrt(dd)  # of exact integers: correctly rounded, as the oracle's
    ii = run_i.cpu().numpy().reshape(mq, job.S, job.k)
    ii = np.where(np.isfinite(dd), ii, -1)
    return dd, ii


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


@dataclass(frozen=True)
class _PrefixPlan:
    """Tile sizes and blocks of the pruned search."""

    #: phase 1: queries and rows per program, packed words of the prefix bound, warps
    BQ: int
    BR: int
    PW: int
    warps: int
    #: phase 2: pairs per program, words per step, warps
    BP: int
    BW: int
    warps2: int
    #: packed words per row (zero-padded to a multiple of ``WORD_MULTIPLE``)
    words: int
    ref_rows: int
    query_rows: int
    resident: bool


class _PrefixTables(NamedTuple):
    """What the pruned search keeps on the device for all blocks."""

    phase1: Any
    phase2: Any
    #: the fixed random feature order (int64 (d,))
    fperm: Any
    #: labels (int64 (n,)) and slots (int32 (n,)) of the sorted reference rows
    labels: Any
    slots: Any


class _PairBlock(NamedTuple):
    """One (query block, reference block) pair of the pruned search on the device."""

    #: packed rows (int32 words) of the queries and of the reference block
    q: Any
    r: Any
    #: labels (int64) of the queries and of the block's rows; slots (int32) of the block's rows
    ql: Any
    rl: Any
    slots: Any
    #: the kernels' pair counter (int32 (1,))
    count: Any
    #: first reference row of the block
    b0: int


class _Pairs(NamedTuple):
    """A dense list of (query, row of the block, distance so far) pairs: int32 arrays, of which
    the first ``n`` are valid."""

    q: Any
    r: Any
    d: Any
    n: int


def _prefix_says_little(job: _Problem, limits: _Limits, tiles) -> bool:
    """``prune='auto'`` on many queries: True when more than ``PREFIX_MAX_SURVIVAL`` of the pairs
    of the first ``PROBE_QUERIES`` queries survive the prefix bound (the tiles run instead)."""
    probe = replace(job, Q=job.Q[:PROBE_QUERIES], ql=job.ql[:PROBE_QUERIES])
    _, _, info = _search_prefix(probe, limits, tiles, None)
    return info["pairs_prefix"] > PREFIX_MAX_SURVIVAL * PROBE_QUERIES * job.R.shape[0] * job.S


def _search_prefix(job: _Problem, limits: _Limits, tiles, progress):
    """The pruned search (``prune='prefix'``) of :func:`search_triton` on uint8 rows; same
    returns, with the pair counts after phase 1 and at the end and the seconds per stage."""
    import torch

    from ..kernels import triton_kernels

    plan = _plan_prefix(job, limits, tiles)
    (m, d), n, S, dev = job.Q.shape, job.R.shape[0], job.S, job.dev
    info = {"backend": "triton", "prune": "prefix", "lanes": "packed", "tiles": (plan.BQ, plan.BR, plan.PW, plan.warps),
            "resident": plan.resident, "ref_rows": plan.ref_rows, "query_rows": plan.query_rows, "device": str(dev),
            "pairs_prefix": 0, "pairs_complete": 0, "stage_seconds": dict.fromkeys(STAGES, 0.0)}
    dist_out = np.full((m, S, job.k), np.inf)
    idx_out = np.full((m, S, job.k), -1, dtype=np.int64)
    if m == 0 or n == 0:
        info["blocks"] = 0
        return dist_out, idx_out, info
    phase1, phase2 = triton_kernels.prefix_kernels()
    tables = _PrefixTables(
        phase1, phase2, torch.from_numpy(np.random.default_rng(FEATURE_SEED).permutation(d)).to(dev),
        torch.from_numpy(job.rl).to(dev),
        torch.from_numpy(np.repeat(np.arange(S, dtype=np.int32), np.diff(job.bounds))).to(dev),
    )
    blocks = 0
    clock = _StageClock(dev, info["stage_seconds"])
    for qs in range(0, m, plan.query_rows):
        qe = min(m, qs + plan.query_rows)
        found, n_blocks = _prefix_query_block(job, plan, tables, qs, qe, info, clock)
        blocks += n_blocks
        dd, ii = _select(found, qe - qs, S, job.k, tables.slots if job.by_class else None)
        dd = dd.cpu().numpy().reshape(qe - qs, S, job.k)
        ii = ii.cpu().numpy().reshape(qe - qs, S, job.k)
        clock("select")
        _store_block(dist_out, idx_out, qs, dd, ii, job.perm, progress)
    info["blocks"] = blocks
    return dist_out, idx_out, info


def _plan_prefix(job: _Problem, limits: _Limits, tiles) -> _PrefixPlan:
    """Tile sizes (``tiles`` or the defaults of the device) and blocks: the reference and query
    blocks that fit the budget, the query block also small enough for the pair lists."""
    (m, d), n = job.Q.shape, job.R.shape[0]
    if tiles is None:
        tiles = INTERPRETER_PREFIX_TILES if job.dev.type == "cpu" else PREFIX_TILES
    BQ, BR, PW, warps = (int(t) for t in tiles)
    BP, BW, warps2 = INTERPRETER_EXTEND_TILES if job.dev.type == "cpu" else EXTEND_TILES
    words = -(-d // (4 * WORD_MULTIPLE)) * WORD_MULTIPLE
    PW = max(1, min(PW, words))
    # a reference row: raw + permuted + packed copies; a query row: the same, its thresholds
    row_bytes = 3 * d + 4 * words
    budget, blocks = limits.blocks(job.dev, n, m, row_bytes, row_bytes + 8 * job.S)
    # pair lists (3 int32 per pair, two lists alive) for an eighth of the pairs; positions are int32
    free = max(0, budget - (1 if blocks.resident else 2) * blocks.ref_rows * row_bytes)
    q_rows = min(blocks.query_rows, max(BQ, int(free // 2 // max(1, 3 * blocks.ref_rows))),
                 max(1, 2**30 // blocks.ref_rows))
    return _PrefixPlan(BQ, BR, PW, warps, BP, BW, warps2, words, blocks.ref_rows, q_rows, blocks.resident)


def _prefix_query_block(job: _Problem, plan: _PrefixPlan, tables: _PrefixTables, qs: int, qe: int, info: dict,
                        clock: _StageClock):
    """Queries ``[qs, qe)`` against every reference block: the complete pairs of each block
    (int64 query, row of the sorted reference, exact distance) and the number of blocks; adds
    the pair counts to ``info``."""
    import torch

    from .gpu_data import reference_blocks

    q_raw = torch.from_numpy(job.Q[qs:qe]).to(job.dev)
    q_dev = _packed_rows(q_raw, tables.fperm)
    ql_dev = torch.from_numpy(job.ql[qs:qe]).to(job.dev)
    thr = None
    found = []
    blocks = 0
    for b0, block in reference_blocks(job.R, plan.ref_rows, job.dev):
        blocks += 1
        nb = block.shape[0]
        rl_block = tables.labels[b0 : b0 + nb].clone()
        slot_block = tables.slots[b0 : b0 + nb].clone()
        if thr is None:  # any rows give an upper bound: the first block seeds every block
            step = 1 if job.by_class else max(1, nb // SEED_ROWS)
            thr = _seed_thresholds(q_raw, ql_dev, block[::step], rl_block[::step], job.bounds - b0,
                                   p_inf=job.p_inf, k=job.k, by_class=job.by_class)
        clock("seed")
        r_dev = _packed_rows(block, tables.fperm)
        pb = _PairBlock(q_dev, r_dev, ql_dev, rl_block, slot_block,
                        torch.zeros(1, dtype=torch.int32, device=job.dev), b0)
        pairs = _prefix_phase(job, plan, tables.phase1, pb, thr)
        info["pairs_prefix"] += pairs.n
        clock("prefix")
        thr = _refine_thresholds(job, plan, tables, pb, thr, pairs)
        clock("refine")
        pairs = _extend_phase(job, plan, tables.phase2, pb, thr, pairs)
        clock("extend")
        info["pairs_complete"] += pairs.n
        found.append((pairs.q[: pairs.n].long(), pairs.r[: pairs.n].long() + b0, pairs.d[: pairs.n].long()))
    return found, blocks


def _prefix_phase(job: _Problem, plan: _PrefixPlan, phase1, pb: _PairBlock, thr) -> _Pairs:
    """Phase 1: the (query, row) pairs whose partial distance over the first ``PW`` words is
    <= their threshold, densely listed (a list with room for an eighth of the pairs; a rare
    overflow runs again with room for all)."""
    import torch

    mq, nb = pb.q.shape[0], pb.r.shape[0]
    cap = max(1024, mq * nb // 8)
    while True:
        pq, pr, pd = (torch.empty(cap, dtype=torch.int32, device=job.dev) for _ in range(3))
        phase1[(-(-mq // plan.BQ), -(-nb // plan.BR))](
            pb.q, pb.r, pb.ql, pb.rl, pb.slots, thr, pb.count, pq, pr, pd,
            mq, nb, pb.q.stride(0), pb.r.stride(0), job.S, cap,
            P_INF=job.p_inf, BY_SLOT=job.by_class, ASM=job.dev.type == "cuda",
            BQ=plan.BQ, BR=plan.BR, PW=plan.PW, num_warps=plan.warps,
        )
        n_in = int(pb.count.item())
        if n_in <= cap:
            return _Pairs(pq, pr, pd, n_in)
        cap = n_in  # rare: more pairs than room; run again with enough
        pb.count.zero_()


def _extend_phase(job: _Problem, plan: _PrefixPlan, phase2, pb: _PairBlock, thr, pairs: _Pairs) -> _Pairs:
    """Phase 2: extend the listed pairs from word ``PW`` to the end in rounds of doubling
    length, keeping those still <= their threshold (densely); the survivors of the last
    round carry exact distances."""
    import torch

    pq, pr, pd, n_in = pairs
    w0, step = plan.PW, max(plan.PW, plan.BW)
    while w0 < plan.words and n_in:
        w1 = min(plan.words, w0 + step)
        pb.count.zero_()
        nq, nr, nd = (torch.empty(n_in, dtype=torch.int32, device=job.dev) for _ in range(3))
        phase2[(-(-n_in // plan.BP),)](
            pb.q, pb.r, pb.slots, thr, pq, pr, pd, pb.count, nq, nr, nd,
            n_in, pb.q.stride(0), pb.r.stride(0), job.S, w0, w1,
            P_INF=job.p_inf, BY_SLOT=job.by_class, ASM=job.dev.type == "cuda", BP=plan.BP, BW=plan.BW,
            STEPS=-(-(w1 - w0) // plan.BW), num_warps=plan.warps2,
        )
        n_in = int(pb.count.item())
        pq, pr, pd = nq, nr, nd
        w0, step = w1, 2 * step
    return _Pairs(pq, pr, pd, n_in)


def _refine_thresholds(job: _Problem, plan: _PrefixPlan, tables: _PrefixTables, pb: _PairBlock, thr,
                       pairs: _Pairs):
    """The thresholds tightened by the exact distances of the listed pairs of smallest prefix
    bound (``REFINE_CANDIDATES`` per query and slot): they are near rows, and a tight
    threshold before the bulk of the extension keeps the lists short."""
    import torch

    pq, pr, pd, n_in = pairs
    if not (REFINE_CANDIDATES and n_in):
        return thr
    mq, S, k = pb.q.shape[0], job.S, job.k
    group = pq[:n_in].long() * S + pb.slots[pr[:n_in]].long() if job.by_class else pq[:n_in].long()
    take = _lowest_bounds(group, pd[:n_in], mq * S, REFINE_CANDIDATES, 255 * (1 if job.p_inf else 4 * plan.PW))
    cq, cr, cd = pq[:n_in][take].contiguous(), pr[:n_in][take].contiguous(), pd[:n_in][take].contiguous()
    cq, cr, cd, n_c = _extend_phase(job, plan, tables.phase2, pb, thr, _Pairs(cq, cr, cd, cq.numel()))
    if n_c:
        best = _select([(cq[:n_c].long(), cr[:n_c].long() + pb.b0, cd[:n_c].long())], mq, S, k,
                       tables.slots if job.by_class else None)[0][:, k - 1]
        best = torch.where(torch.isfinite(best), best, NO_THRESHOLD).to(torch.int32).view(mq, S)
        thr = torch.minimum(thr, best)
    return thr


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
