"""The portable backend: blocked torch on CPU or CUDA, for both groupings.

One tiling driver (:func:`_drive`) walks (query block x reference block) tiles; per tile it
either masks rows of the query's own label (OTHER_LABEL, one slot) or splits the block's
columns by class (BY_CLASS, rows of a block gathered class by class in index order), and
merges each slot's columns into the running answer. What a tile holds is one of:

* exact tiles: ``torch.cdist`` (float32 for uint8 linf/l1, whose integer results float32
  holds exactly; float64 otherwise), merged as the k best per slot, ties to the lowest
  index; l2 with at most ``DIRECT_L2_MAX_DIM`` features too;
* exact uint8 l2 tiles (:func:`l2_int8`): an int8 GEMM with int32 sums of the rows shifted
  by -128 (VNNI/AMX on the CPU, tensor cores on CUDA) gives exact integers, merged like the
  cdist tiles: no candidates, no rerank. Used where the device's int8 GEMM passes a probe
  (:func:`int8_matmul_is_exact`) *and* is fast there (:func:`int8_gemm_fast`: a CPU without
  an int8 dot-product instruction runs it at a small part of the float32 GEMM's speed);
* approximate l2 tiles (float data, or uint8 where the int8 GEMM is not exact or not fast;
  on the CPU :mod:`sepcheck.engine.backends.projection` usually runs instead): a float32
  GEMM (||q||^2 + ||r||^2 - 2 q.r; float64 for float64 data or where float32 matmul runs
  in reduced precision) whose c smallest values per slot are candidates, reranked exactly
  with a proven error bound (:mod:`sepcheck.engine.kernels.candidates`), incomplete queries
  recomputed by exact tiles.

Memory: one (query block x reference block) tile plus the two converted blocks; the int8
path also keeps one shifted int8 copy of the rows when it takes at most half the budget. On
CUDA the reference is uploaded once in its own dtype (uint8 stays uint8) when it takes at most
:data:`RESIDENT_FRACTION` of the free GPU memory, and each block is converted on the device;
otherwise blocks are copied from the host as they are needed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ...core.errors import SepcheckError
from ..kernels.candidates import EXTRA_CANDIDATES, U32, U64, finish, gemm_sqdist_error, prune
from ..kernels.exact import sq_norms
from ..kernels.select_torch import empty_best, far_value, merge_block, merge_candidates
from ..problem import Problem

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
    """True when float32 matmul on ``device`` runs in full float32 (not TF32 or bf16), by two
    probes: 8 x (1 + 2**-20) summed in a GEMM is exactly 8 + 2**-17 in float32, but 8 in any
    format with fewer than 21 mantissa bits; and a seeded 64 x 256 by 256 x 64 product of
    normal values is within 2**-18 of the float64 product relative to sum |a| |b| (float32
    errs ~2**-22 there, bf16 ~2**-10). The second probe is needed because some CPU kernels
    (oneDNN with AMX under ``torch.set_float32_matmul_precision('medium')``) reduce precision
    only from some size on. Reads no global setting and changes none."""
    a = torch.full((8, 8), 1.0 + 2.0**-20, dtype=torch.float32, device=device)
    b = torch.ones((8, 8), dtype=torch.float32, device=device)
    if not bool(torch.all(a @ b == 8.0 + 2.0**-17).item()):
        return False
    g = torch.Generator().manual_seed(0)
    A = torch.randn(64, 256, generator=g)
    B = torch.randn(256, 64, generator=g)
    got = (A.to(device) @ B.to(device)).cpu().double()
    err = (got - A.double() @ B.double()).abs()
    scale = A.double().abs() @ B.double().abs()
    return bool(torch.all(err <= scale * 2.0**-18).item())


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
    symmetric: bool = False,
    stop: Callable[[], bool] | None = None,
) -> None:
    """The tiling driver of both groupings.

    For every query block (rows ``qs..``, converted ``q``) and every reference block, the
    tile ``tile_of(q, qs, r, rows)`` (bq, b) over reference rows ``rows`` (converted ``r``)
    is merged slot by slot into running (bq, S, width) values and indices with
    ``merge(vals, inds, tile_columns, row_ids)``; finished query blocks go to
    ``on_block(qs, vals, inds)``. OTHER_LABEL: one slot, rows of the query's label are +inf.
    BY_CLASS: the block's rows are taken class by class (index order inside each class),
    so each slot's columns are contiguous and increasing.

    ``symmetric`` (OTHER_LABEL in self mode, tiles with ``tile[i, j]`` the value of the pair
    whichever row is the query): a query block meets only reference rows from its own
    first row on, and the tile's columns of every later query block are merged, transposed,
    into that block's running answer; each pair is computed once. A block still receives its
    rows in increasing index order: earlier blocks' (transposed) first, then its own.

    ``stop`` (or None) is asked after each tile's merge; True ends the drive there (the
    current query block unfinished: no ``on_block``, no ``progress`` for it).
    """
    S = problem.n_slots
    symmetric = symmetric and problem.self_mode and not problem.by_class
    if symmetric:
        br = max(bq, br // bq * bq)  # reference blocks start where query blocks start
    pending: dict[int, list] = {}
    codes = problem.slot_codes
    rl = as_tensor(problem.reference_labels).to(device)
    ql = as_tensor(problem.query_labels).to(device)
    resident = resident_reference(problem, device)
    buf = None
    for qs in range(0, problem.n_query, bq):
        q = as_tensor(problem.queries[qs : qs + bq]).to(device=device, dtype=dt)
        best = pending.pop(qs, None) or [empty_best(q.shape[0], width, device) for _ in range(S)]
        for rs in range(qs if symmetric else 0, problem.n_ref, br):
            rows, bounds = _block_rows(problem, codes, rs, br)
            ids = as_tensor(rows).to(device)
            if resident is not None:
                r = (resident[ids] if problem.by_class else resident[rs : rs + br]).to(dt)
            else:
                r_np = problem.reference[rows] if problem.by_class else problem.reference[rs : rs + br]
                r, buf = converted(as_tensor(r_np), device, dt, buf)
            tile = tile_of(q, qs, r, rows)
            if not problem.by_class:
                same = ql[qs : qs + bq, None] == rl[None, rs : rs + br]
                tile = tile.masked_fill_(same, far_value(tile.dtype))
            for s in range(S):
                a, b = int(bounds[s]), int(bounds[s + 1])
                if b > a:
                    best[s] = merge(*best[s], tile[:, a:b], ids[a:b])
            if stop is not None and stop():
                return
            if symmetric:
                q_ids = torch.arange(qs, qs + q.shape[0], device=device)
                for later in range(max(rs, qs + bq), rs + rows.size, bq):
                    if later not in pending:
                        n_later = min(bq, problem.n_query - later)
                        pending[later] = [empty_best(n_later, width, device)]
                    cols = tile[:, later - rs : later - rs + bq]
                    pending[later][0] = merge(*pending[later][0], cols.T, q_ids)
        vals = torch.stack([v for v, _ in best], dim=1)
        inds = torch.stack([i for _, i in best], dim=1)
        on_block(qs, vals, inds)
        if progress is not None:
            progress(q.shape[0])


def _block_rows(problem: Problem, codes: np.ndarray, rs: int, br: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference rows, slot bounds) of the reference block from row ``rs`` (``br`` rows):
    BY_CLASS, the rows class by class (index order inside each class), slot ``s`` at
    ``rows[bounds[s] : bounds[s + 1]]``; OTHER_LABEL, the rows in order, one slot."""
    if problem.by_class:
        order = np.argsort(codes[rs : rs + br], kind="stable")
        rows = rs + order
        return rows, np.searchsorted(codes[rows], np.arange(problem.n_slots + 1))
    rows = np.arange(rs, min(rs + br, problem.n_ref))
    return rows, np.array([0, rows.size])


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
    dt = direct_dtype(problem)
    bq, br = block_sizes(problem, budget, block_size, torch.finfo(dt).bits // 8)
    return _exact_tiles(problem, device, bq, br, dt, cdist_tiles(problem.p), progress)


def cdist_tiles(p: float) -> Callable[[torch.Tensor, int, torch.Tensor, np.ndarray], torch.Tensor]:
    """``tile_of`` for :func:`_drive`: exact ``torch.cdist`` tiles of the p-norm (no
    matrix-product shortcut for l2)."""

    def tile_of(q, qs, r, rows):
        return torch.cdist(
            q.unsqueeze(0), r.unsqueeze(0), p=p, compute_mode="donot_use_mm_for_euclid_dist"
        )[0]

    return tile_of


def _exact_tiles(
    problem: Problem,
    device: torch.device,
    bq: int,
    br: int,
    dt: torch.dtype,
    tile_of: Callable[[torch.Tensor, int, torch.Tensor, np.ndarray], torch.Tensor],
    progress: Callable[[int], None] | None,
    symmetric: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best per slot of exact tiles (float, or integers with :func:`far_value` for
    excluded entries); results (m, S, k). ``symmetric``: see :func:`_drive`."""
    k, S = problem.k, problem.n_slots
    out_d = np.empty((problem.n_query, S, k))
    out_i = np.empty((problem.n_query, S, k), dtype=np.int64)

    def on_block(qs, vals, inds):
        out_d[qs : qs + vals.shape[0]] = vals.cpu().numpy()
        out_i[qs : qs + vals.shape[0]] = inds.cpu().numpy()

    _drive(problem, device, bq, br, dt, tile_of, k, merge_block, on_block, progress, symmetric)
    return out_d, out_i


def l2_int8(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact uint8 l2 by an int8 GEMM (see :func:`int8_gemm_exact`): exact integers in every
    tile, so the k best per slot need no candidates and no rerank. A tile holds
    ``||r||^2 - 2 q.r`` of the rows shifted by -128 (the squared distance less ``||q||^2``,
    a constant per query that cannot change its order; added back at the end), in self mode
    the full squared distance, whose tiles are symmetric: each pair is computed once.
    The rows are shifted once (one int8 copy of the data, at most half of ``budget``;
    otherwise block by block). Results (m, S, k): squared distances in raw units."""
    bq, br = block_sizes(problem, budget, block_size, 1)
    # self mode: full squared distances (symmetric tiles, each pair computed once)
    shifted, dt, tile_of, sq_q = int8_setup(problem, device, budget, full=problem.self_mode)
    d, i = _exact_tiles(shifted, device, bq, br, dt, tile_of, progress, symmetric=True)
    return (d if problem.self_mode else d + sq_q[:, None, None]), i


def int8_setup(
    problem: Problem, device: torch.device, budget: int, full: bool
) -> tuple[Problem, torch.dtype, Callable, np.ndarray]:
    """What the exact uint8 l2 tiles need: (the problem whose rows the driver converts,
    the dtype it converts them to, ``tile_of`` for :func:`_drive`, the int32 squared norms
    of the shifted query rows). The rows are shifted to int8 once when the copy takes at
    most half of ``budget`` (otherwise block by block). A tile holds ``||r||^2 - 2 q.r`` of
    the shifted rows, or with ``full`` the exact squared distance (``||q||^2`` added)."""
    shifted = problem
    if problem.reference.nbytes + (0 if problem.self_mode else problem.queries.nbytes) <= budget // 2:
        ref = shifted_int8(problem.reference)
        qry = ref if problem.self_mode else shifted_int8(problem.queries)
        shifted = dataclasses.replace(problem, reference=ref, queries=qry)
    sq_q = shifted_sq_norms(problem.queries)
    sq_r = sq_q if problem.self_mode else shifted_sq_norms(problem.reference)
    sq_rt = as_tensor(sq_r).to(device)
    sq_qt = as_tensor(sq_q).to(device) if full else None

    def tile_of(q, qs, r, rows):
        tile = int8_tile(q, r, _take(sq_rt, rows))
        return tile if sq_qt is None else tile.add_(sq_qt[qs : qs + q.shape[0], None])

    dt = torch.int8 if shifted is not problem else torch.uint8
    return shifted, dt, tile_of, sq_q


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
    dt, tile_of, err = gemm_setup(problem, device)
    bq, br = block_sizes(problem, budget, block_size, torch.finfo(dt).bits // 8)
    c = problem.k + EXTRA_CANDIDATES
    m, S = problem.n_query, problem.n_slots
    cand = np.empty((m, S, c), dtype=np.int64)
    bound = np.empty((m, S))

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


def gemm_setup(problem: Problem, device: torch.device) -> tuple[torch.dtype, Callable, np.ndarray]:
    """The approximate l2 tiles: (dtype, ``tile_of`` for :func:`_drive` giving
    ``||q||^2 + ||r||^2 - 2 q.r`` by a GEMM, per query the bound ``err`` (m,) on its error
    (:func:`gemm_sqdist_error`)). float32 where the device's float32 matmul is full
    precision and the data is not float64; float64 otherwise."""
    full32 = problem.queries.dtype != np.float64 and float32_matmul_is_exact(device)
    dt = torch.float32 if full32 else torch.float64
    sq_q = sq_norms(problem.queries)
    sq_r = sq_norms(problem.reference)
    err = gemm_sqdist_error(problem.dim, sq_q, float(sq_r.max()), U32 if full32 else U64)
    sq_qt = as_tensor(sq_q).to(device=device, dtype=dt)
    sq_rt = as_tensor(sq_r).to(device=device, dtype=dt)

    def tile_of(q, qs, r, rows):
        return torch.addmm(
            sq_qt[qs : qs + q.shape[0], None] + _take(sq_rt, rows)[None, :], q, r.T, alpha=-2.0
        )

    return dt, tile_of, err


#: the exact l2 paths; ``SEPCHECK_L2_PATH`` forces one (tests run every path on any machine):
#: projection bounds (:mod:`sepcheck.engine.backends.projection`), the int8 GEMM (uint8 only), float32
#: GEMM candidates; 'auto' picks by data and hardware (:func:`sepcheck.engine.backends.l2.choose_path`)
L2_PATHS = ("auto", "projection", "int8", "float32")
#: CPU flags of an int8 dot-product instruction (VNNI, AMX): the int8 GEMM is fast there
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def l2_path_setting() -> str:
    """The ``SEPCHECK_L2_PATH`` environment variable ('auto' when unset)."""
    value = os.environ.get("SEPCHECK_L2_PATH", "").strip().lower() or "auto"
    if value not in L2_PATHS:
        raise SepcheckError(
            f"SEPCHECK_L2_PATH={value!r} is not an l2 path: use one of {', '.join(L2_PATHS)}"
        )
    return value


def use_int8(problem: Problem, device: torch.device) -> bool:
    """True when uint8 l2 runs on the int8 GEMM: it is exact on ``device``
    (:func:`int8_gemm_exact`) and fast there (:func:`int8_gemm_fast`), or forced by
    ``SEPCHECK_L2_PATH=int8`` (a one-line error where it is not exact)."""
    setting = l2_path_setting()
    if setting == "int8":
        if problem.integer and not int8_gemm_exact(problem, device):
            raise SepcheckError(
                f"SEPCHECK_L2_PATH=int8, but the int8 GEMM on {device.type} is not exact for "
                f"these rows ({problem.dim} features): unset it or use float32"
            )
        return problem.integer
    if setting != "auto":
        return False
    return int8_gemm_exact(problem, device) and int8_gemm_fast(device)


def int8_gemm_fast(device: torch.device) -> bool:
    """True where ``torch._int_mm`` is fast: CUDA (tensor cores), or a CPU with an int8 dot
    product instruction (:data:`INT8_FLAGS` in /proc/cpuinfo). Where the flags cannot be
    read, a one-time timing probe against the float32 GEMM decides (cached per process).
    Without such instructions the CPU kernel runs at a small part of the float32 GEMM's
    speed (benchmarks/bench_l2_cpu.py)."""
    if device.type != "cpu":
        return True
    flags = cpu_flags()
    if flags is not None:
        return any(f in flags for f in INT8_FLAGS)
    return _int8_timing_probe()


@functools.cache
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux), or None where unreadable."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


@functools.cache
def _int8_timing_probe() -> bool:
    """The int8 GEMM takes at most the float32 GEMM's time on 512 x 1024 by 1024 x 512."""
    import time

    a = torch.randint(-128, 128, (512, 1024), dtype=torch.int8)
    b = a.T.contiguous()
    fa, fb = a.float(), b.float()
    times = []
    for op in (lambda: torch._int_mm(a, b), lambda: fa @ fb):
        try:
            op()
        except RuntimeError:
            return False
        t0 = time.perf_counter()
        op()
        times.append(time.perf_counter() - t0)
    return times[0] <= times[1]


#: the int8 GEMM path stays exact in int32 up to this many features: |2 q.r| <= 2 * 128**2 * d,
#: ||q||^2 - 2 q.r <= 3 * 128**2 * d and the result ||q - r||^2 <= 255**2 * d all < 2**31
INT8_GEMM_MAX_DIM = (2**31 - 1) // 255**2


def int8_gemm_exact(problem: Problem, device: torch.device) -> bool:
    """uint8 l2 by exact squared distances from an int8 GEMM with int32 sums (tensor cores
    on CUDA, VNNI on the CPU) of the rows shifted by -128 (a shift leaves differences
    unchanged): when the device's int8 GEMM passes :func:`int8_matmul_is_exact`.
    Whether it also runs fast is :func:`int8_gemm_fast`'s question."""
    return (
        problem.integer
        and problem.dim <= INT8_GEMM_MAX_DIM
        and int8_matmul_is_exact(device)
    )


def int8_matmul_is_exact(device: torch.device) -> bool:
    """True when ``torch._int_mm`` on ``device`` runs and returns exact int32 dot products
    at the extremes (probed once per device type): rows of all -128, all 127, alternating,
    and random mixes of the two, whose pair sums would saturate an int16 intermediate (as
    pre-VNNI int8 kernels do), are compared against int64 products. Shapes the kernel
    refuses fall back to an exact float64 product in :func:`int8_tile`."""
    return _int8_probe(device.type)


@functools.cache
def _int8_probe(device_type: str) -> bool:
    g = torch.Generator().manual_seed(0)
    a = torch.where(torch.rand(64, 256, generator=g) < 0.5, -128, 127).to(torch.int8)
    a[0] = -128
    a[1] = 127
    a[2, ::2], a[2, 1::2] = -128, 127
    try:
        on = a.to(device_type)
        got = torch._int_mm(on, on.T).cpu()
    except (RuntimeError, NotImplementedError):
        return False
    return bool(torch.equal(got.to(torch.int64), a.long() @ a.long().T))


def shifted_sq_norms(x: np.ndarray) -> np.ndarray:
    """(n,) int32 squared norms of uint8 rows shifted by -128 (exact: <= 128**2 * d)."""
    out = np.empty(x.shape[0], dtype=np.int32)
    for s in range(0, x.shape[0], 4096):
        b = x[s : s + 4096].astype(np.int16) - 128
        out[s : s + 4096] = (b * b).sum(axis=1, dtype=np.int32)
    return out


def shifted_int8(x: np.ndarray) -> np.ndarray:
    """uint8 rows as int8 shifted by -128 (``x ^ 0x80`` reinterpreted: no arithmetic)."""
    return np.bitwise_xor(x, np.uint8(128)).view(np.int8)


def int8_tile(q: torch.Tensor, r: torch.Tensor, sq_r: torch.Tensor) -> torch.Tensor:
    """(a, b) int32 ``||r||^2 - 2 q.r`` of rows given as uint8 or as int8 shifted by -128
    (:func:`shifted_int8`), ``sq_r`` the int32 squared norms of the shifted rows; int32
    arithmetic is exact (:data:`INT8_GEMM_MAX_DIM`).

    ``torch._int_mm`` wants more than 16 rows on the left and multiples of 8 for the inner
    and right sizes (CUDA; torch 2.13's CPU kernel returns garbage for one feature): the
    operands are padded with zeros (zero rows are sliced off, zero features add nothing to
    a dot product). Where it still refuses, a float64 GEMM of the same integers is exact
    too (every sum is below 2**53)."""
    if q.dtype == torch.uint8:
        q = torch.bitwise_xor(q, 128).view(torch.int8)
    if r.dtype == torch.uint8:
        r = torch.bitwise_xor(r, 128).view(torch.int8)
    a, b, d = q.shape[0], r.shape[0], q.shape[1]
    pa, pb, pd = max(17, a) - a, -b % 8, -d % 8
    try:
        qp = torch.nn.functional.pad(q, (0, pd, 0, pa)) if (pa or pd) else q
        rp = torch.nn.functional.pad(r, (0, pd, 0, pb)) if (pb or pd) else r
        dots = torch._int_mm(qp, rp.T)
        if pa or pb:
            dots = dots[:a, :b].contiguous()
    except RuntimeError:
        dots = (q.to(torch.float64) @ r.to(torch.float64).T).to(torch.int32)
    return dots.mul_(-2).add_(sq_r[None, :])


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
    if problem.p == 2 and problem.dim > DIRECT_L2_MAX_DIM and use_int8(problem, device):
        d, i = l2_int8(problem, device, budget, block_size, progress)
        return d, i, {"l2_path": "int8"}
    if problem.p == 2 and problem.dim > DIRECT_L2_MAX_DIM:
        cand, bound = l2_candidates(problem, device, budget, block_size, progress)
        d, i, n_fb = finish(
            problem, cand, bound, 2.0, lambda sub: brute_force(sub, device, budget, block_size)
        )
        return d, i, {"l2_path": "float32", "recomputed": n_fb}
    d, i = brute_force(problem, device, budget, block_size, progress)
    return d, i, {}


def radius_pairs(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None,
    max_pairs: int,
    threshold: float,
    on_block: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray | None], None],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Every (query, reference row) pair whose tile value is at most ``threshold`` (raw
    units), rows of the query's own label never: tiles of the one driver :func:`_drive`,
    whose merge step collects the pairs instead of keeping the k best. A superset of the
    pairs within ``threshold`` when the tile values are approximate (float data: the caller
    checks each pair's exact distance).

    uint8 l2 tiles are exact squared integers of the int8 GEMM (compared with the largest
    integer <= ``threshold ** 2``); float l2 tiles are GEMM squared distances (compared with
    ``threshold ** 2`` plus their proven error bound, :func:`gemm_setup`); other tiles are
    ``torch.cdist`` tiles (:func:`brute_force`'s).
    A query block that collects more than ``max_pairs`` candidate pairs is searched again
    in halves (down to single queries, whose pairs are at most the reference's rows), so
    that the pairs held stay bounded. ``on_block(qs, n, rows, cols, values)`` receives
    each query block (rows ``qs .. qs + n``) once, its pairs in any order: absolute query
    rows, reference rows and float64 distances in raw units where the tiles are exact
    (uint8), else None.
    """
    tiles = _radius_tiles(problem, device, budget, threshold)
    bq, br = block_sizes(problem, budget, block_size, tiles.elem)
    if block_size is None and br > 8:
        br -= br % 8  # the int8 GEMM's operands need no padding
    pairs = _PairCollector(tiles, max_pairs, on_block)
    _drive_pairs(pairs, device, 0, problem.n_query, bq, br, progress)


@dataclasses.dataclass(frozen=True)
class _RadiusTiles:
    """The tiles of a radius search and their test. ``driven``: the problem whose rows the
    driver converts (to ``dt``, ``elem`` bytes an element) into ``tile_of``'s tiles. A hit
    is a tile value <= ``limit``: a number, a tensor (one limit per query row), or None
    (every pair but the excluded ones). ``row_add`` (per query row, or None) is added to a
    hit's value to give its distance, squared when ``squared``; ``exact``: the tile
    values are exact (the distances are reported), else approximate (a superset)."""

    driven: Problem
    dt: torch.dtype
    tile_of: Callable[[torch.Tensor, int, torch.Tensor, np.ndarray], torch.Tensor]
    elem: int
    limit: Any
    row_add: np.ndarray | None
    squared: bool
    exact: bool


def _radius_tiles(
    problem: Problem, device: torch.device, budget: int, threshold: float
) -> _RadiusTiles:
    """The tiles :func:`radius_pairs` compares with ``threshold`` (raw units): int8 GEMM
    (uint8 l2), float GEMM (other l2 with more than :data:`DIRECT_L2_MAX_DIM` features) or
    cdist tiles."""
    squared = problem.p == 2 and problem.dim > DIRECT_L2_MAX_DIM
    if squared and use_int8(problem, device):
        # exact integers ||r||^2 - 2 q.r (shifted rows) <= floor(threshold^2) - ||q||^2
        driven, dt, tile_of, sq_q = int8_setup(problem, device, budget, full=False)
        t2 = min(threshold * threshold, 2.0**62)
        room = np.clip(math.floor(t2) - sq_q.astype(np.int64), -(2**31), 2**31 - 2)
        limit: Any = as_tensor(room.astype(np.int32)).to(device)
        limit = None if t2 >= 2**31 + 255**2 * problem.dim else limit  # every pair
        return _RadiusTiles(driven, dt, tile_of, 1, limit, sq_q.astype(np.float64), True, True)
    if squared:
        dt, tile_of, err = gemm_setup(problem, device)
        limit = None if math.isinf(threshold) else as_tensor(threshold * threshold + err).to(device)
        return _RadiusTiles(problem, dt, tile_of, torch.finfo(dt).bits // 8, limit, None, True, False)
    dt = direct_dtype(problem)
    p = problem.p
    # cdist of integers, or a float64 linf (one rounded subtraction per feature, then
    # abs and max: the exact routine's value)
    exact = math.isinf(p) or (problem.integer and p == 1)
    limit = None if math.isinf(threshold) else threshold
    return _RadiusTiles(
        problem, dt, cdist_tiles(p), torch.finfo(dt).bits // 8, limit, None, False, exact
    )


class _PairCollector:
    """The candidate pairs of the query block being driven by :func:`_drive_pairs`, and
    what it needs to hand them on: :meth:`tile` is the driver's ``tile_of``,
    :meth:`collect` its merge step (keeps nothing of the k best), :meth:`finish_block` its
    ``on_block`` (the block's pairs to ``on_block`` of :func:`radius_pairs`) and
    :meth:`overflowed` its ``stop``. A block of more than one query that collects more
    than ``max_pairs`` pairs records its first query row in ``overflow`` and the drive
    stops; :meth:`reset` drops the pairs of that block."""

    def __init__(
        self,
        tiles: _RadiusTiles,
        max_pairs: int,
        on_block: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray | None], None],
    ):
        self.tiles = tiles
        self.max_pairs = max_pairs
        self.on_block = on_block
        #: (tile rows, reference rows, tile values) of the current query block's hits
        self.found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.held = 0  # pairs in ``found``
        self.start = 0  # absolute first query row of the current tile
        self.offset = 0  # absolute first query row of the (sub)problem being driven
        self.overflow: int | None = None  # first query row of a block with too many pairs

    def tile(self, q: torch.Tensor, qs: int, r: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """The tile of the driven (sub)problem's rows ``qs..``, absolute rows ``start..``."""
        self.start = qs + self.offset
        return self.tiles.tile_of(q, self.start, r, rows)

    def collect(self, run_v, run_i, block: torch.Tensor, ids: torch.Tensor):
        """Keep the hits of ``block`` (columns ``ids``); the running values unchanged."""
        limit = self.tiles.limit
        if limit is None:  # every pair but the excluded ones
            hit = block != far_value(block.dtype)
        elif isinstance(limit, torch.Tensor):  # excluded entries are beyond any limit
            hit = block <= limit[self.start : self.start + block.shape[0], None]
        else:
            hit = block <= limit
        some = torch.nonzero(hit.any(dim=1)).reshape(-1)  # few rows hold hits
        if some.numel():
            r, c = torch.nonzero(hit[some], as_tuple=True)
            r = some[r]
            self.found.append((r, ids[c], block[r, c]))
            self.held += r.numel()
            if self.held > self.max_pairs and block.shape[0] > 1:
                self.overflow = self.start
        return run_v, run_i

    def overflowed(self) -> bool:
        """True once a block collected more pairs than it may hold."""
        return self.overflow is not None

    def reset(self) -> None:
        """Drop the pairs of an overflowed block (searched again in halves)."""
        self.found.clear()
        self.held = 0
        self.overflow = None

    def finish_block(self, qs: int, vals: torch.Tensor, inds: torch.Tensor) -> None:
        """The pairs of the finished query block (driven rows ``qs..``) to ``on_block``."""
        n = vals.shape[0]
        qs += self.offset
        self.held = 0
        if self.found:
            rows = torch.cat([f[0] for f in self.found]).cpu().numpy() + qs
            cols = torch.cat([f[1] for f in self.found]).cpu().numpy()
            values = torch.cat([f[2].to(torch.float64) for f in self.found]).cpu().numpy()
        else:
            rows = cols = np.empty(0, dtype=np.int64)
            values = np.empty(0)
        self.found.clear()
        tiles = self.tiles
        if tiles.row_add is not None:
            values += tiles.row_add[rows]  # exact: integers below 2**53
        dists = (np.sqrt(values) if tiles.squared else values) if tiles.exact else None
        self.on_block(qs, n, rows, cols, dists)


def _drive_pairs(
    pairs: _PairCollector,
    device: torch.device,
    lo: int,
    hi: int,
    rows_per_block: int,
    br: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Query rows lo..hi in blocks of ``rows_per_block`` into ``pairs``; a block with too
    many pairs again in halves."""
    driven = pairs.tiles.driven
    while lo < hi:
        sub = driven if (lo, hi) == (0, driven.n_query) else driven.subset(slice(lo, hi))
        pairs.offset = lo
        _drive(sub, device, rows_per_block, br, pairs.tiles.dt, pairs.tile, 1, pairs.collect,
               pairs.finish_block, progress, stop=pairs.overflowed)
        if pairs.overflow is None:
            return
        end = min(pairs.overflow + rows_per_block, hi)
        row = pairs.overflow
        pairs.reset()
        _drive_pairs(pairs, device, row, end, max(1, rows_per_block // 2), br, progress)
        lo = end
