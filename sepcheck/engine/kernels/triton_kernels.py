"""Triton kernels of the GPU engine: a (query tile x reference tile) linf / l1 / uint8 l2 tile
with a running k best per query (ties to the lowest index) and optional tile pruning.

The kernel functions are plain Python here and are wrapped by ``triton.jit`` only when first
asked for (:func:`tile_kernel`), because triton decides between the compiler and its CPU
interpreter (``TRITON_INTERPRET=1``) at decoration time. The kernels call helpers (``HELPERS``)
that are bound as module globals at the same time: jitted for the compiler, which inlines
them, and plain functions for the interpreter.

One program owns ``BQ`` queries and one chunk ``[start, end)`` of reference rows. It walks
the chunk ``BR`` rows at a time in increasing index order, computes the (BQ, BR) distance
tile one feature at a time (``BD`` features unrolled per step), masks rows of the query's own
label (grouping "other label"), and merges the tile into a running list of the k best
(distance, index) pairs held in registers. Because rows arrive in increasing index order, a
tie with a listed pair always loses, and a tile whose lower bound is >= every query's current
k-th best can be skipped without changing the answer.

Lanes (how a tile is computed):

* ``LANES_I32``: uint8 widened to int32 (linf and l1; pure Triton).
* ``LANES_F16``: uint8 converted to float16 (linf only): 0..255 and their differences are
  exact in float16, max/sub/abs are packed f16x2 instructions on Hopper (pure Triton).
* ``LANES_F64``: float input computed in float64 (the oracle's precision).
* ``LANES_PACKED``: four uint8 per int32 word with the PTX SIMD instruction ``vabsdiff4``
  (native VABSDIFF4 on sm_90; ``.add`` accumulates l1; for linf the byte maxima are kept in
  u16x2 lanes with ``prmt`` + ``max.u16x2``, because ``vmax4`` is emulated). ``ASM=False``
  runs the same word arithmetic in plain Triton (the interpreter cannot run inline PTX).
* ``LANES_DOT``: uint8 l2, rows shifted by -128 to int8, ``tl.dot`` with int32 accumulators
  (tensor cores on CUDA) and the shifted squared norms: exact squared distances.
"""

import functools
import os

import triton
import triton.language as tl

LANES_I32, LANES_F16, LANES_F64, LANES_PACKED, LANES_DOT = 0, 1, 2, 3, 4

#: index of empty slots in the running list (above every real row index)
EMPTY_INDEX = 2**31 - 1 - 64


def interpreting() -> bool:
    """True when triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def interpreter_loaded() -> bool:
    """True when triton's own library was imported in interpreter mode (triton reads
    ``TRITON_INTERPRET`` when it is imported, so the variable must be set before that)."""
    return type(tl.zeros).__name__ == "InterpretedFunction"


def _knn_tile(
    Q, R, QL, RL, QSUM, RSUM, CH_START, CH_END, OUT_D, OUT_I,
    m, dim, stride_q, stride_r, n_chunks,
    P_INF: tl.constexpr, K: tl.constexpr, KP: tl.constexpr, MASK_LABELS: tl.constexpr,
    PRUNE: tl.constexpr, LANES: tl.constexpr, OUT_F64: tl.constexpr, ASM: tl.constexpr,
    BQ: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr, NF: tl.constexpr, CHUNK: tl.constexpr,
):  # pragma: no cover - traced by triton
    """The k best (distance, index) of queries ``[pid_q * BQ, +BQ)`` in chunk ``pid_c``.

    Q / R: rows as the lanes read them (NF elements each: bytes, float, packed int32 words or
    shifted int8); QL / RL: int64 labels; QSUM / RSUM: int32 row sums (lanes 'dot': shifted
    squared norms); CH_START / CH_END: int32 chunk bounds relative to R. Writes to OUT_D /
    OUT_I at ``(query * n_chunks + chunk) * K + j`` the chunk's K lexicographically smallest
    (distance, index) pairs, in no particular order, indices relative to R; +inf with an index
    >= ``EMPTY_INDEX`` where fewer than K rows count."""
    pid_q = tl.program_id(0)
    pid_c = tl.program_id(1)
    rows_q = pid_q * BQ + tl.arange(0, BQ)
    qmask = rows_q < m
    start = tl.load(CH_START + pid_c)
    end = tl.load(CH_END + pid_c)
    ql = tl.load(QL + rows_q, mask=qmask, other=-1)
    # loads in the feature loop read clamped rows (no predicates); results are masked later
    qptr = Q + tl.minimum(rows_q, m - 1).to(tl.int64) * stride_q
    kcols = tl.arange(0, KP)
    best_d, best_i = empty_best(kcols, K, OUT_F64, BQ, KP)
    if PRUNE:
        qsum = tl.load(QSUM + rows_q, mask=qmask, other=0).to(best_d.dtype)
    for off in range(0, CHUNK, BR):
        cols = start + off + tl.arange(0, BR)
        rmask = cols < end
        todo = start + off < end
        if PRUNE:
            todo = todo & tile_may_improve(RSUM, cols, rmask, qsum, qmask, best_d, dim, P_INF)
        if todo:
            rptr = R + tl.minimum(cols, end - 1).to(tl.int64) * stride_r
            if LANES == 3:
                dist = packed_tile(qptr, rptr, P_INF, ASM, BQ, BR, BD, NF)
            elif LANES == 4:
                dist = dot_tile(qptr, rptr, QSUM, RSUM, rows_q, qmask, cols, rmask, BQ, BR, BD, NF)
            else:
                dist = lane_tile(qptr, rptr, P_INF, LANES, BQ, BR, BD, NF)
            dist = dist.to(best_d.dtype)
            valid = rmask[None, :] & qmask[:, None]
            if MASK_LABELS:
                rl = tl.load(RL + cols, mask=rmask, other=-1)
                valid = valid & (ql[:, None] != rl[None, :])
            dist = tl.where(valid, dist, float("inf"))
            best_d, best_i = merge_tile(dist, cols, best_d, best_i, K)
    out = (rows_q[:, None] * n_chunks + pid_c) * K + kcols[None, :]
    omask = qmask[:, None] & (kcols[None, :] < K)
    tl.store(OUT_D + out, best_d, mask=omask)
    tl.store(OUT_I + out, best_i, mask=omask)


def _empty_best(kcols, K: tl.constexpr, OUT_F64: tl.constexpr, BQ: tl.constexpr,
                KP: tl.constexpr):  # pragma: no cover - traced by triton
    """The empty running list, (BQ, KP): +inf and ``EMPTY_INDEX`` + j in the K real columns,
    -inf in the padding columns (never the worst, so never replaced); float64 distances with
    ``OUT_F64``, else float32."""
    if OUT_F64:
        best_d = tl.where(kcols[None, :] < K, float("inf"), -float("inf")) + tl.zeros((BQ, KP), dtype=tl.float64)
    else:
        best_d = tl.where(kcols[None, :] < K, float("inf"), -float("inf")) + tl.zeros((BQ, KP), dtype=tl.float32)
    best_i = (2147483647 - 64 + kcols)[None, :] + tl.zeros((BQ, KP), dtype=tl.int32)
    return best_d, best_i


def _tile_may_improve(RSUM, cols, rmask, qsum, qmask, best_d, dim,
                      P_INF: tl.constexpr):  # pragma: no cover - traced by triton
    """False when no query of the tile can gain from its rows: the row-sum bound of every
    (query, row) pair is >= the query's current k-th best (or the query is padding)."""
    # linf >= |sum q - sum r| / d and l1 >= |sum q - sum r| (integers, exact in the
    # distance dtype: float32 below 2**24, else float64); per query, the distance from
    # its sum to the tile's [min, max] of sums bounds every pair of the tile
    rsum = tl.load(RSUM + cols, mask=rmask, other=0).to(best_d.dtype)
    rlo = tl.min(tl.where(rmask, rsum, float("inf")))
    rhi = tl.max(tl.where(rmask, rsum, -float("inf")))
    lb = tl.maximum(tl.maximum(rlo - qsum, qsum - rhi), 0)
    worst = tl.max(best_d, axis=1)
    if P_INF:
        worst = worst * dim
    ok = (lb >= worst) | (qmask == 0)
    return tl.min(tl.where(ok, 1, 0)) == 0


def _packed_tile(qptr, rptr, P_INF: tl.constexpr, ASM: tl.constexpr, BQ: tl.constexpr, BR: tl.constexpr,
                 BD: tl.constexpr, NF: tl.constexpr):  # pragma: no cover - traced by triton
    """Lanes 'packed': the (BQ, BR) int32 distance tile of rows of NF packed words."""
    # 4 bytes per word: VABSDIFF4 (native on sm_90); linf keeps the byte maxima in
    # two u16x2 accumulators (PRMT + max.u16x2), l1 accumulates VABSDIFF4.ACC
    lo = tl.zeros((BQ, BR), dtype=tl.int32)
    hi = tl.zeros((BQ, BR), dtype=tl.int32)
    for w0 in range(0, NF, BD):
        for j in tl.static_range(BD):
            qw = tl.load(qptr + (w0 + j))
            rw = tl.load(rptr + (w0 + j))
            qb = tl.broadcast_to(qw[:, None], (BQ, BR))
            rb = tl.broadcast_to(rw[None, :], (BQ, BR))
            lo, hi = packed_step(qb, rb, lo, hi, P_INF, ASM)
    return packed_finish(lo, hi, P_INF)


def _dot_tile(qptr, rptr, QSUM, RSUM, rows_q, qmask, cols, rmask, BQ: tl.constexpr, BR: tl.constexpr,
              BD: tl.constexpr, NF: tl.constexpr):  # pragma: no cover - traced by triton
    """Lanes 'dot' (uint8 l2): the (BQ, BR) int64 tile of exact squared distances."""
    # uint8 l2 as an int8 GEMM: rows shifted by -128 (zero-padded to NF, a multiple
    # of BD), dot products exact in int32; QSUM / RSUM hold the shifted rows' squared
    # norms, so ||q||^2 + ||r||^2 - 2 q.r is the exact squared distance (int64)
    acc = tl.zeros((BQ, BR), dtype=tl.int32)
    kk = tl.arange(0, BD)
    for f0 in range(0, NF, BD):
        qb = tl.load(qptr[:, None] + (f0 + kk)[None, :])
        rb = tl.load(rptr[None, :] + (f0 + kk)[:, None])
        acc += tl.dot(qb, rb, out_dtype=tl.int32)
    qn = tl.load(QSUM + rows_q, mask=qmask, other=0).to(tl.int64)
    rn = tl.load(RSUM + cols, mask=rmask, other=0).to(tl.int64)
    return qn[:, None] + rn[None, :] - 2 * acc.to(tl.int64)


def _lane_tile(qptr, rptr, P_INF: tl.constexpr, LANES: tl.constexpr, BQ: tl.constexpr, BR: tl.constexpr,
               BD: tl.constexpr, NF: tl.constexpr):  # pragma: no cover - traced by triton
    """Lanes 'i32' (int32), 'f16' (float16, linf) and 'f64' (float rows): the (BQ, BR)
    distance tile of rows of NF features, in the lanes' dtype."""
    if LANES == 1:
        acc = tl.zeros((BQ, BR), dtype=tl.float16)
    elif LANES == 2:
        acc = tl.zeros((BQ, BR), dtype=tl.float64)
    else:
        acc = tl.zeros((BQ, BR), dtype=tl.int32)
    # outer-product form: one feature at a time (BD unrolled), a (BQ, BR)
    # elementwise update per feature, no cross-thread reduction
    for f0 in range(0, NF, BD):
        for j in tl.static_range(BD):
            q = tl.load(qptr + (f0 + j))
            r = tl.load(rptr + (f0 + j))
            if LANES == 1:
                q = q.to(tl.float16)
                r = r.to(tl.float16)
            elif LANES == 2:
                q = q.to(tl.float64)
                r = r.to(tl.float64)
            else:
                q = q.to(tl.int32)
                r = r.to(tl.int32)
            diff = tl.abs(q[:, None] - r[None, :])
            if P_INF:
                acc = tl.maximum(acc, diff)
            else:
                acc += diff
    return acc


def _merge_tile(dist, cols, best_d, best_i, K: tl.constexpr):  # pragma: no cover - traced by triton
    """Merge a (BQ, BR) tile of masked distances (+inf: the pair does not count) of rows
    ``cols`` into the running lists: K rounds, each moving the tile's smallest (distance,
    lowest column) per query into the place of the list's worst (distance, highest index)
    when lexicographically smaller: ties go to the lower index."""
    for _t in tl.static_range(K):
        tmin = tl.min(dist, axis=1)
        jmin = tl.min(tl.where(dist == tmin[:, None], cols[None, :], 2147483647), axis=1)
        wd = tl.max(best_d, axis=1)
        wi = tl.max(tl.where(best_d == wd[:, None], best_i, -1), axis=1)
        better = ((tmin < wd) | ((tmin == wd) & (jmin < wi))) & (tmin < float("inf"))
        pos = (best_d == wd[:, None]) & (best_i == wi[:, None]) & better[:, None]
        best_d = tl.where(pos, tmin[:, None], best_d)
        best_i = tl.where(pos, jmin[:, None], best_i)
        dist = tl.where(cols[None, :] == jmin[:, None], float("inf"), dist)
    return best_d, best_i


#: the jitted helpers of the kernels, bound as module globals by :func:`_jitted` (triton looks
#: them up as globals when it traces a kernel; each is the plain function ``_<name>``)
HELPERS = ("empty_best", "tile_may_improve", "packed_tile", "dot_tile", "lane_tile", "merge_tile",
           "packed_step", "packed_finish", "threshold")
empty_best = tile_may_improve = packed_tile = dot_tile = lane_tile = merge_tile = None
packed_step = packed_finish = threshold = None

# ---------------------------------------------------------------- pruned search ("prefix")
#
# The reference and the queries carry their features in a fixed random order, packed four
# bytes per int32 word. A partial linf (max) or l1 (sum) over the first words is a lower bound
# of the full distance. Phase 1 (:func:`_prefix_pairs`) computes it for every (query, row)
# pair of a (BQ x BR) tile over the first PW words and appends the pairs whose bound is <= the
# query's threshold (an exact distance of some row, so >= the k-th best) to a dense list;
# phase 2 (:func:`_extend_pairs`) extends the listed pairs over the next words and keeps those
# still <= the threshold, densely again (no lane waits for another pair's features). What
# survives the last round carries its exact distance.


def _packed_step(qb, rb, lo, hi, P_INF: tl.constexpr, ASM: tl.constexpr):  # pragma: no cover - traced by triton
    """One packed word per element: linf keeps the byte maxima in two u16x2 accumulators
    (VABSDIFF4 + PRMT + max.u16x2 with ``ASM``), l1 sums the four absolute differences into
    ``lo`` (VABSDIFF4.ADD); without ``ASM`` the same word arithmetic in plain Triton (the
    interpreter cannot run inline PTX)."""
    if ASM and P_INF:
        lo, hi = tl.inline_asm_elementwise(
            "{.reg .b32 t, l, h, z; mov.b32 z, 0; vabsdiff4.u32.u32.u32 t, $2, $3, z; "
            "prmt.b32 l, t, z, 0x4240; prmt.b32 h, t, z, 0x4341; "
            "max.u16x2 $0, $4, l; max.u16x2 $1, $5, h;}",
            "=r,=r,r,r,r,r", [qb, rb, lo, hi], dtype=(tl.int32, tl.int32), is_pure=True, pack=1,
        )
    elif ASM:
        lo = tl.inline_asm_elementwise(
            "vabsdiff4.u32.u32.u32.add $0, $1, $2, $3;", "=r,r,r,r",
            [qb, rb, lo], dtype=tl.int32, is_pure=True, pack=1,
        )
    else:
        t0 = tl.abs(((qb >> 0) & 255) - ((rb >> 0) & 255))
        t1 = tl.abs(((qb >> 8) & 255) - ((rb >> 8) & 255))
        t2 = tl.abs(((qb >> 16) & 255) - ((rb >> 16) & 255))
        t3 = tl.abs(((qb >> 24) & 255) - ((rb >> 24) & 255))
        if P_INF:
            lo = tl.maximum(lo & 65535, t0) | (tl.maximum(lo >> 16, t2) << 16)
            hi = tl.maximum(hi & 65535, t1) | (tl.maximum(hi >> 16, t3) << 16)
        else:
            lo += t0 + t1 + t2 + t3
    return lo, hi


def _packed_finish(lo, hi, P_INF: tl.constexpr):  # pragma: no cover - traced by triton
    """The per-element distance of the accumulators of :func:`_packed_step`."""
    if P_INF:
        lo = tl.maximum(lo & 65535, lo >> 16)
        hi = tl.maximum(hi & 65535, hi >> 16)
        lo = tl.maximum(lo, hi)
    return lo


def _threshold(THR, RSLOT, q, r, mask, n_slots, BY_SLOT: tl.constexpr):  # pragma: no cover - traced by triton
    """The threshold of each (query, row) pair: per query, or per (query, slot of the row)."""
    if BY_SLOT:
        slot = tl.load(RSLOT + r, mask=mask, other=0)
        return tl.load(THR + q * n_slots + slot, mask=mask, other=-1)
    return tl.load(THR + q, mask=mask, other=-1)


def _prefix_pairs(
    Q, R, QL, RL, RSLOT, THR, CNT, OUT_Q, OUT_R, OUT_D,
    m, n, stride_q, stride_r, n_slots, cap,
    P_INF: tl.constexpr, BY_SLOT: tl.constexpr, ASM: tl.constexpr,
    BQ: tl.constexpr, BR: tl.constexpr, PW: tl.constexpr,
):  # pragma: no cover - traced by triton
    pid_q = tl.program_id(0)
    pid_r = tl.program_id(1)
    rows_q = pid_q * BQ + tl.arange(0, BQ)
    cols = pid_r * BR + tl.arange(0, BR)
    qmask = rows_q < m
    rmask = cols < n
    qptr = Q + tl.minimum(rows_q, m - 1).to(tl.int64) * stride_q
    rptr = R + tl.minimum(cols, n - 1).to(tl.int64) * stride_r
    lo = tl.zeros((BQ, BR), dtype=tl.int32)
    hi = tl.zeros((BQ, BR), dtype=tl.int32)
    for j in tl.static_range(PW):
        qw = tl.load(qptr + j)
        rw = tl.load(rptr + j)
        lo, hi = packed_step(tl.broadcast_to(qw[:, None], (BQ, BR)), tl.broadcast_to(rw[None, :], (BQ, BR)),
                             lo, hi, P_INF, ASM)
    dist = packed_finish(lo, hi, P_INF)
    qq = tl.broadcast_to(rows_q[:, None], (BQ, BR))
    rr = tl.broadcast_to(cols[None, :], (BQ, BR))
    valid = qmask[:, None] & rmask[None, :]
    if not BY_SLOT:  # grouping "other label": rows of the query's own label never count
        ql = tl.load(QL + rows_q, mask=qmask, other=-1)
        rl = tl.load(RL + cols, mask=rmask, other=-1)
        valid = valid & (ql[:, None] != rl[None, :])
    thr = threshold(THR, RSLOT, qq, rr, valid, n_slots, BY_SLOT)
    keep = (valid & (dist <= thr)).to(tl.int32)
    # dense append: one atomic per tile reserves the room, a scan gives each pair its place
    row_cnt = tl.sum(keep, axis=1)
    total = tl.sum(row_cnt, axis=0)
    if total > 0:
        base = tl.atomic_add(CNT, total)
        pos = base + (tl.cumsum(row_cnt, axis=0) - row_cnt)[:, None] + tl.cumsum(keep, axis=1) - keep
        ok = (keep != 0) & (pos < cap)
        tl.store(OUT_Q + pos, qq, mask=ok)
        tl.store(OUT_R + pos, rr, mask=ok)
        tl.store(OUT_D + pos, dist, mask=ok)


def _extend_pairs(
    Q, R, RSLOT, THR, IN_Q, IN_R, IN_D, CNT, OUT_Q, OUT_R, OUT_D,
    n_in, stride_q, stride_r, n_slots, w0, w1,
    P_INF: tl.constexpr, BY_SLOT: tl.constexpr, ASM: tl.constexpr, BP: tl.constexpr, BW: tl.constexpr,
    STEPS: tl.constexpr,
):  # pragma: no cover - traced by triton
    pid = tl.program_id(0)
    at = pid * BP + tl.arange(0, BP)
    pmask = at < n_in
    pq = tl.load(IN_Q + at, mask=pmask, other=0)
    pr = tl.load(IN_R + at, mask=pmask, other=0)
    part = tl.load(IN_D + at, mask=pmask, other=0)
    qptr = Q + pq.to(tl.int64) * stride_q
    rptr = R + pr.to(tl.int64) * stride_r
    lo = tl.zeros((BP, BW), dtype=tl.int32)
    hi = tl.zeros((BP, BW), dtype=tl.int32)
    for j in range(STEPS):  # words [w0, w1), BW per step (STEPS * BW >= w1 - w0)
        words = w0 + j * BW + tl.arange(0, BW)
        wmask = (words < w1)[None, :]
        qw = tl.load(qptr[:, None] + words[None, :], mask=wmask, other=0)
        rw = tl.load(rptr[:, None] + words[None, :], mask=wmask, other=0)
        lo, hi = packed_step(qw, rw, lo, hi, P_INF, ASM)
    d = packed_finish(lo, hi, P_INF)
    if P_INF:  # noqa: SIM108 - a constexpr branch
        dist = tl.maximum(part, tl.max(d, axis=1))
    else:
        dist = part + tl.sum(d, axis=1)
    thr = threshold(THR, RSLOT, pq, pr, pmask, n_slots, BY_SLOT)
    keep = (pmask & (dist <= thr)).to(tl.int32)
    total = tl.sum(keep, axis=0)
    if total > 0:
        base = tl.atomic_add(CNT, total)
        pos = base + tl.cumsum(keep, axis=0) - keep
        ok = keep != 0
        tl.store(OUT_Q + pos, pq, mask=ok)
        tl.store(OUT_R + pos, pr, mask=ok)
        tl.store(OUT_D + pos, dist, mask=ok)


@functools.cache
def _jitted(interpret: bool):
    assert interpret == interpreting()
    # the helpers are looked up as globals when triton traces the kernels; the interpreter runs
    # the kernels as Python and calls them as plain functions (a jitted call costs milliseconds)
    wrap = (lambda f: f) if interpret else triton.jit
    helpers = {name: wrap(globals()["_" + name]) for name in HELPERS}
    globals().update(helpers)
    return triton.jit(_knn_tile), triton.jit(_prefix_pairs), triton.jit(_extend_pairs), helpers


def _kernels():
    kernels = _jitted(interpreting())
    globals().update(kernels[3])
    return kernels


def tile_kernel():
    """The jitted brute-force tile kernel for the current mode (compiler or interpreter)."""
    return _kernels()[0]


def prefix_kernels():
    """The jitted kernels of the pruned search: (phase 1 prefix pairs, phase 2 extension)."""
    return _kernels()[1:3]
