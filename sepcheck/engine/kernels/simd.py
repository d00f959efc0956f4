"""Vectorised, tiled and pruned CPU kernels (numba) for exact linf and l1 k-nearest search.

One search serves both groupings of the engine: OTHER_LABEL (``slot_of_row is None``: the
``k`` nearest rows whose label differs from the query's) and BY_CLASS (``slot_of_row`` gives
every reference row a slot ``0..S-1``: the ``k`` nearest rows of every slot).

How it is fast and still exact:

- **Narrow lanes.** uint8 data stays uint8: ``|a - b|`` is ``max(a, b) - min(a, b)`` in
  uint8 lanes (``vpmaxub``/``vpminub``/``vpsubb``), linf takes the max in uint8 lanes, l1
  sums chunks of :data:`CHUNK` (= 256) features with ``psadbw`` (sum of absolute
  differences of 8 bytes per 64-bit lane, :func:`_sad_intrinsic`) and group sums in
  uint16/uint32 lanes. Float data is computed in float64 lanes (float32 is widened element
  by element, so linf values equal ``|float64(a) - float64(b)|`` exactly).
- **A first bound for a block of queries x 64 rows at once.** The reference's bound values are kept
  transposed (64 rows side by side, :func:`transposed_blocks`), so the bound of a query
  block against a row block is pure vertical vector work, each row block read once per
  query block. linf: the distance on the first :data:`PREFIX` features of a fixed random
  feature order (:func:`feature_order`; a partial max is a lower bound). l1: the l1
  distance of sums over groups of :data:`COARSE` features (triangle inequality).
- **Surviving lanes as a bit mask.** The first bounds of a query against the 64 rows are
  compared with the k-th best at once (a mask); only the rows that may enter are visited.
- **l1 second bound per chunk.** uint8: the floor means of groups of :data:`FINE` (= 4)
  features, one uint8 each (:func:`fine_means`): a group's sum lies in ``[4 m, 4 m + 3]``, so
  ``l1 >= 4 * SAD(means) - 3 * groups`` (exact integers, ``psadbw`` on a quarter of the
  bytes; within a few percent of l1 on natural images). Float: sums over groups of
  :data:`GROUP` features. Both bound every chunk; the running test is *exact sum of the
  chunks scanned + bound of the rest >= k-th best*.
- **Chunked early abandon.** linf continues in the random order :data:`LINF_CHUNK` features
  at a time (differences of natural images cluster in space, so a spread-out order reaches
  the threshold after a few features); both norms stop once the k-th best is reached.

Exactness: for every query the reference rows are visited in increasing index order, and a
row is dropped only when a lower bound of its distance is ``>=`` the current k-th best of its
slot (it cannot enter: ties go to the lower index, and every kept row has a lower index).
Float bounds are shrunk by a provable rounding margin. Distances are in raw units (uint8:
integers 0..255 for linf, up to 255 * d for l1).

Extra memory: linf keeps a permuted copy of the reference (n x d, its own size) and the
transposed prefix (n x 64 values); l1 the coarse sums (n x d/64) and the fine means (uint8:
n x d/4 bytes, a quarter of the data) or the group sums (float: n x d/16 float64); per query
batch the same for :data:`QUERY_BATCH` queries.

Float l1 sums are accumulated in float64 in feature order; they can differ from another
summation order in the last bits, so callers that need the oracle's exact rounding rerank
the selected rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, overload

from ...core.errors import SepcheckError

#: features in the lower-bound prefix (one 512-bit vector of uint8)
PREFIX = 64
#: features per group of the group-sum lower bound (uint8: sums fit uint16 lanes)
GROUP = 16
#: features per early-abandon chunk of the full distance (uint16 l1 partial sums stay exact)
CHUNK = 256
#: groups per chunk
GPC = CHUNK // GROUP
#: uint8 l1: features per group of the fine bound (a group's sum floored to a multiple of
#: FINE, divided by FINE, fits one uint8: the group's floor mean)
FINE = 4
#: fine means per chunk
FPC = CHUNK // FINE
#: features per early-abandon chunk of linf (in the permuted order, most pairs stop in the first)
LINF_CHUNK = 64
#: queries per tile
QUERY_BLOCK = 64
#: reference rows side by side in the first bound (64 uint8 = one 512-bit vector)
LANES = 64
#: features per group of the coarse l1 bound (uint8: sums fit uint16 lanes)
COARSE = 64
#: queries per kernel call (progress granularity)
QUERY_BATCH = 1024

#: indices of the counters in ``info["pairs"]``
_LABEL, _PREFIX, _GROUP, _ABANDON, _FULL, _SCANNED = 0, 1, 2, 3, 4, 5
_PAIR_NAMES = ("label", "first_bound", "group", "abandoned", "full", "features_scanned")
_EPS = float(np.finfo(np.float64).eps)


# --- typed element helpers (chosen at compile time by the argument type) ---------------------

def _unary(int_impl, float_impl):
    """A function that numba compiles to ``int_impl`` for an integer argument, else ``float_impl``."""
    def stub(a):  # pragma: no cover - only called inside numba
        raise NotImplementedError

    overload(stub, inline="always")(lambda a: int_impl if isinstance(a, types.Integer) else float_impl)
    return stub


def _binary(int_impl, float_impl):
    """The two-argument :func:`_unary` (dispatch on the first argument)."""
    def stub(a, b):  # pragma: no cover - only called inside numba
        raise NotImplementedError

    overload(stub, inline="always")(lambda a, b: int_impl if isinstance(a, types.Integer) else float_impl)
    return stub


def _float_absdiff(a, b):
    return abs(np.float64(a) - np.float64(b))


def _float_add(a, b):
    return a + b


def _float_zero(a):
    return np.float64(0.0)


#: |a - b|: uint8 lanes for uint8 (max - min never wraps), float64 otherwise
_absdiff = _binary(lambda a, b: np.uint8(max(a, b) - min(a, b)), _float_absdiff)
#: |a - b| of uint16 group sums (uint16 lanes) or float64 sums
_gdiff = _binary(lambda a, b: np.uint16(max(a, b) - min(a, b)), _float_absdiff)
#: l1 chunk sums: uint16 lanes (CHUNK * 255 < 2**16)
_l1_zero = _unary(lambda a: np.uint16(0), _float_zero)
_l1_add = _binary(lambda a, b: np.uint16(a + np.uint16(b)), _float_add)
#: sums of group-sum differences: uint32 lanes
_gsum_zero = _unary(lambda a: np.uint32(0), _float_zero)
_gsum_add = _binary(lambda a, b: np.uint32(a + np.uint32(b)), _float_add)


# --- vector loops: contiguous slices from 0 so LLVM sees no negative-index wraparound ---------

@njit(inline="always", error_model="numpy")
def _linf_part(q, r, m):
    for t in range(q.shape[0]):
        m = max(m, _absdiff(q[t], r[t]))
    return m


def _sad_intrinsic(width):
    """An intrinsic ``f(a, b) -> int64``: sum |a[t] - b[t]| over the first ``width``
    elements of two C-contiguous uint8 arrays (the caller checks the lengths), written as
    LLVM's sum-of-absolute-differences pattern (zext, sub, abs, add reduction) so that the
    x86 backend emits ``psadbw`` (64 features per instruction with AVX-512BW; portable IR,
    legalised to narrower vectors elsewhere)."""

    def typer(typingctx, a, b):
        ok = all(isinstance(x, types.Array) and x.dtype == types.uint8 and x.ndim == 1 and x.layout == "C"
                 for x in (a, b))
        if not ok:
            return None

        def codegen(context, builder, signature, args):
            vec = ir.VectorType(ir.IntType(8), width)
            wide = ir.VectorType(ir.IntType(32), width)
            loaded = []
            for ty, val in zip(signature.args, args, strict=True):
                ptr = builder.bitcast(context.make_array(ty)(context, builder, value=val).data, vec.as_pointer())
                loaded.append(builder.zext(builder.load(ptr, align=1), wide))
            abs_fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(wide, [wide, ir.IntType(1)]), f"llvm.abs.v{width}i32")
            sum_fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), [wide]), f"llvm.vector.reduce.add.v{width}i32")
            diff = builder.call(abs_fn, [builder.sub(loaded[0], loaded[1]), ir.Constant(ir.IntType(1), 0)])
            return builder.zext(builder.call(sum_fn, [diff]), ir.IntType(64))

        return types.int64(a, b), codegen

    typer.__name__ = f"_sad{width}"
    return intrinsic(typer)


#: sum of |differences| of CHUNK uint8 values (one early-abandon chunk of the l1 scan)
_sad_chunk = _sad_intrinsic(CHUNK)
#: sum of |differences| of the CHUNK // FINE fine means of one chunk
_sad_fine = _sad_intrinsic(FPC)


@njit(inline="always", error_model="numpy")
def _l1_loop(q, r):
    acc = _l1_zero(q[0])
    for t in range(q.shape[0]):
        acc = _l1_add(acc, _absdiff(q[t], r[t]))
    return np.float64(acc)


def _l1_part(q, r):  # pragma: no cover - only called inside numba
    """l1 of two slices of at most :data:`CHUNK` features (exact for uint8)."""
    raise NotImplementedError


@overload(_l1_part)
def _l1_part_impl(q, r):
    if q.dtype == types.uint8 and q.layout == "C" and r.layout == "C":
        def impl(q, r):
            if q.shape[0] == CHUNK:
                return np.float64(_sad_chunk(q, r))
            return _l1_loop(q, r)
        return impl
    return lambda q, r: _l1_loop(q, r)


@njit(inline="always", error_model="numpy")
def _group_bound(gq, gr):
    """Sum of |group sum differences| (uint16 / uint32 lanes for uint8), a lower bound of l1."""
    acc = _gsum_zero(gq[0])
    for t in range(gq.shape[0]):
        acc = _gsum_add(acc, _gdiff(gq[t], gr[t]))
    return np.float64(acc)


@njit(inline="always")
def _insert(bd, bi, v, j):
    # bd ascending; j is larger than every kept index, so it goes after equal distances
    pos = bd.shape[0] - 1
    while pos > 0 and bd[pos - 1] > v:
        bd[pos] = bd[pos - 1]
        bi[pos] = bi[pos - 1]
        pos -= 1
    bd[pos] = v
    bi[pos] = j


@njit(inline="always", error_model="numpy")
def _stage1(Qs, q0, q1, blk, acc, linf):
    # vertical over LANES reference rows and a block of queries at once: each row of the
    # block is loaded once per query block, and the queries' accumulators are independent
    # chains. linf: max of |q - r| (uint8 lanes); l1: sum of |group sum differences|
    for g in range(q1 - q0):
        a = acc[g]
        for lane in range(LANES):
            a[lane] = 0
    for t in range(blk.shape[0]):
        row = blk[t]
        for g in range(q1 - q0):
            qt = Qs[q0 + g, t]
            a = acc[g]
            if linf:
                for lane in range(LANES):
                    a[lane] = max(a[lane], _absdiff(qt, row[lane]))
            else:
                for lane in range(LANES):
                    a[lane] = _gsum_add(a[lane], _gdiff(qt, row[lane]))


@njit(inline="always", error_model="numpy")
def _first_bound(acc_lin, acc_int, acc_l1, g, ln, linf, integer, Qa, Ra, i, j, shrink):
    """The first lower bound of the pair (query i, row j) (lane ``ln`` of query ``g``'s
    accumulators of :func:`_stage1`); float l1 bounds shrunk by their rounding margin
    (``Qa``/``Ra``: the l1 norms, read only there: placeholders for linf)."""
    if linf:
        return np.float64(acc_lin[g, ln])
    if integer:
        return np.float64(acc_int[g, ln])
    return (acc_l1[g, ln] - 64.0 * _EPS * (Qa[i] + Ra[j])) * shrink


@njit(inline="always")
def _all_lanes(nl):
    """A uint64 mask of the first ``nl`` (<= 64) lanes."""
    return np.uint64(0xFFFFFFFFFFFFFFFF) >> np.uint64(LANES - nl)


@njit(inline="always", error_model="numpy")
def _below(acc_lin, acc_int, acc_l1, g, nl, linf, integer, Qa, Ra, i, j0, shrink, thr):
    """A uint64 mask of the lanes ``ln < nl`` whose first bound (:func:`_first_bound`) is
    below ``thr`` (the pairs that may enter)."""
    mask = np.uint64(0)
    for ln in range(nl):
        lb = _first_bound(acc_lin, acc_int, acc_l1, g, ln, linf, integer, Qa, Ra, i, j0 + ln, shrink)
        mask |= np.uint64(lb < thr) << np.uint64(ln)
    return mask


@njit(inline="always", error_model="numpy")
def _linf_scan(q, r, mx, e, thr):
    """linf of a pair continued from feature ``e`` with the running max ``mx``,
    :data:`LINF_CHUNK` features at a time, stopping once it reaches ``thr``: (value,
    features scanned); a value >= ``thr`` may be partial."""
    d = q.shape[0]
    e_start = e
    while e < d:
        e2 = min(e + LINF_CHUNK, d)
        mx = _linf_part(q[e:e2], r[e:e2], mx)
        e = e2
        if mx >= thr:
            break
    return np.float64(mx), e - e_start


@njit(inline="always", error_model="numpy")
def _fine_bound(qm, rm, slack):
    """uint8 l1 lower bound from the floor means of groups of :data:`FINE` features
    (:func:`fine_means`): a group's sum ``s`` lies in ``[FINE * m, FINE * m + FINE - 1]``,
    so ``|s_q - s_r| >= FINE * |m_q - m_r| - (FINE - 1)`` and, summed over the groups
    (``slack`` = ``(FINE - 1)`` x the number of groups), ``l1 >= FINE * SAD(m_q, m_r) -
    slack`` (triangle inequality). Exact integers; the means are padded to whole chunks."""
    acc = 0
    for e in range(0, qm.shape[0], CHUNK):
        acc += _sad_chunk(qm[e : e + CHUNK], rm[e : e + CHUNK])
    return np.float64(FINE * acc) - slack


@njit(inline="always", error_model="numpy")
def _l1_scan_fine(q, r, qm, rm, rest, thr):
    """uint8 l1 of a pair by chunks of :data:`CHUNK` features, abandoned once the exact sum
    of the chunks scanned plus the fine bound (:func:`_fine_bound`) of the rest reaches
    ``thr``: (value, or ``max(partial, thr)`` when abandoned; features scanned)."""
    d = q.shape[0]
    v = 0.0
    e = 0
    c = 0
    while e < d:
        e2 = min(e + CHUNK, d)
        v += _l1_part(q[e:e2], r[e:e2])
        groups = (e2 - e + FINE - 1) // FINE
        rest -= np.float64(FINE * _sad_fine(qm[c * FPC : (c + 1) * FPC], rm[c * FPC : (c + 1) * FPC])
                           - (FINE - 1) * groups)
        e = e2
        c += 1
        if v + rest >= thr:
            v = max(v, thr)  # abandoned
            break
    return v, e


@njit(inline="always", error_model="numpy")
def _l1_scan(q, r, gq, gr, rest, err, shrink, thr):
    """l1 of a pair by chunks of :data:`CHUNK` features, abandoned once the exact sum of the
    chunks scanned plus the group bound of the rest (``rest``: the bound of all groups)
    reaches ``thr``: (value, or ``max(partial, thr)`` when abandoned; features scanned).
    The bound of a chunk is computed only when the chunk is scanned (most pairs are
    abandoned after a third of the chunks)."""
    d = q.shape[0]
    v = 0.0
    e = 0
    c = 0
    while e < d:
        e2 = min(e + CHUNK, d)
        v += _l1_part(q[e:e2], r[e:e2])
        rest -= _group_bound(gq[c * GPC : (c + 1) * GPC], gr[c * GPC : (c + 1) * GPC])
        e = e2
        c += 1
        if (v + rest - err) * shrink >= thr:
            v = max(v, thr)  # abandoned
            break
    return v, e


@njit(inline="always")
def _accumulators(linf, integer, Rs):
    """(linf, integer l1, float l1) accumulators of :func:`_stage1` for one query block
    (the unused ones 1 x 1)."""
    if linf:
        acc_lin = np.empty((QUERY_BLOCK, LANES), dtype=Rs.dtype)
        acc_l1 = np.empty((1, 1), dtype=np.float64)
    else:
        acc_lin = np.empty((1, 1), dtype=Rs.dtype)
        acc_l1 = np.empty((QUERY_BLOCK, LANES), dtype=np.float64)
    if integer and not linf:
        acc_int = np.empty((QUERY_BLOCK, LANES), dtype=np.uint32)
    else:
        acc_int = np.empty((1, 1), dtype=np.uint32)
    return acc_lin, acc_int, acc_l1


@njit(inline="always", error_model="numpy")
def _stage1_any(Qs, q0, q1, blk, acc_lin, acc_int, acc_l1, linf, integer):
    if linf:
        _stage1(Qs, q0, q1, blk, acc_lin, True)
    elif integer:
        _stage1(Qs, q0, q1, blk, acc_int, False)
    else:
        _stage1(Qs, q0, q1, blk, acc_l1, False)


@njit(inline="always", error_model="numpy")
def _lanes(acc_lin, acc_int, acc_l1, g, nl, linf, integer, Qa, Ra, i, j0, shrink, thr, by_slot):
    """A uint64 mask of the lanes ``ln < nl`` to visit: all of them with ``by_slot`` (each
    slot has its own threshold, tested per row), else those below ``thr`` (:func:`_below`)."""
    if by_slot:
        return _all_lanes(nl)
    return _below(acc_lin, acc_int, acc_l1, g, nl, linf, integer, Qa, Ra, i, j0, shrink, thr)


@njit(inline="always", error_model="numpy")
def _l1_second(q, r, i, j, Qg, Qa, Qm, Rg, Ra, Rm, integer, slack, shrink, thr):
    """l1 of the pair (query ``i`` = ``q``, row ``j`` = ``r``) past its first bound: its
    second bound (uint8: the fine means, :func:`_fine_bound`; float: the group sums), then
    the chunked scan (:func:`_l1_scan_fine`, :func:`_l1_scan`). Returns (value, or
    ``max(partial, thr)`` when abandoned; features scanned; True when the second bound
    alone reaches ``thr``: then nothing is scanned and the value is ``thr``)."""
    if integer:
        # l1 >= FINE x SAD of the fine floor means - slack, kept per chunk:
        # exact sum of the chunks scanned + the fine bound of the rest
        rest = _fine_bound(Qm[i], Rm[j], slack)
        if rest >= thr:
            return thr, 0, True
        v, scanned = _l1_scan_fine(q, r, Qm[i], Rm[j], rest, thr)
        return v, scanned, False
    # l1 >= sum of |group sum differences| (triangle inequality), kept
    # per chunk: exact sum of the chunks scanned + the bound of the rest
    gq = Qg[i]
    gr = Rg[j]
    rest = _group_bound(gq, gr)
    err = 0.0 if integer else 64.0 * _EPS * (Qa[i] + Ra[j])
    if (rest - err) * shrink >= thr:
        return thr, 0, True
    v, scanned = _l1_scan(q, r, gq, gr, rest, err, shrink, thr)
    return v, scanned, False


@njit(inline="always")
def _keep_pair(out_q, out_j, out_v, b, found, cap, i, j, v):
    """Radius mode: the pair (query ``i``, row ``j``) at distance ``v`` as pair number
    ``found`` of query block ``b`` (written while the block's ``cap`` places last, beyond
    them only counted); returns the new number of pairs."""
    if found < cap:
        out_q[b, found] = i
        out_j[b, found] = j
        out_v[b, found] = v
    return found + 1


@njit(inline="always")
def _store_counts(counts, b, n_label, n_stage1, n_group, n_abandon, n_full, n_scanned):
    """Query block ``b``'s counters into ``counts[b]`` (:data:`_PAIR_NAMES`)."""
    counts[b, _LABEL] = n_label
    counts[b, _PREFIX] = n_stage1
    counts[b, _GROUP] = n_group
    counts[b, _ABANDON] = n_abandon
    counts[b, _FULL] = n_full
    counts[b, _SCANNED] = n_scanned


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def _search_kernel(Q, Qs, Qg, Qa, Qm, ql, R, Rs, Rg, Ra, Rm, rl, slot, by_slot, linf, integer, out_d, out_i,
                   counts, fixed, stop, out_q, out_j, out_v, out_n):
    """k-NN (``fixed`` False): the k best per query and slot into ``out_d``/``out_i``.
    Radius (``fixed`` True, OTHER_LABEL): every pair at distance < ``stop`` (the threshold
    from the first row on; pass the next float above a closed radius); query block b writes
    its pairs to ``out_q/out_j/out_v[b, :cap]`` and their number to ``out_n[b]`` (beyond
    ``cap`` only counted: the caller reruns the block with room for all)."""
    m, d = Q.shape
    n = R.shape[0]
    k = out_d.shape[2]
    cap = out_j.shape[1]
    nblocks = (m + QUERY_BLOCK - 1) // QUERY_BLOCK
    # float bounds carry rounding: shrink them by a provable relative error
    shrink = 1.0 - 4.0 * (d + GROUP) * _EPS
    # uint8 l1: the fine bound's slack, (FINE - 1) per group of FINE features
    slack = np.float64((FINE - 1) * ((d + FINE - 1) // FINE))
    for b in prange(nblocks):
        q0 = b * QUERY_BLOCK
        q1 = min(q0 + QUERY_BLOCK, m)
        found = n_label = n_stage1 = n_group = n_abandon = n_full = n_scanned = 0
        acc_lin, acc_int, acc_l1 = _accumulators(linf, integer, Rs)
        for jb in range(Rs.shape[0]):
            blk = Rs[jb]
            j0 = jb * LANES
            j1 = min(j0 + LANES, n)
            _stage1_any(Qs, q0, q1, blk, acc_lin, acc_int, acc_l1, linf, integer)
            for i in range(q0, q1):
                g = i - q0
                q = Q[i]
                lab = ql[i]
                thr0 = stop if fixed else out_d[i, 0, k - 1]
                mask = _lanes(acc_lin, acc_int, acc_l1, g, j1 - j0, linf, integer, Qa, Ra, i, j0, shrink, thr0, by_slot)
                n_stage1 += j1 - j0
                while mask:
                    ln = trailing_zeros(mask)
                    mask &= mask - np.uint64(1)
                    n_stage1 -= 1
                    j = j0 + ln
                    lb1 = _first_bound(acc_lin, acc_int, acc_l1, g, ln, linf, integer, Qa, Ra, i, j, shrink)
                    if by_slot:
                        s = slot[j]
                        thr = out_d[i, s, k - 1]
                    else:
                        s = 0
                        thr = thr0
                    if lb1 >= thr:
                        n_stage1 += 1
                        continue
                    if not by_slot and rl[j] == lab:
                        n_label += 1
                        continue
                    r = R[j]
                    if linf:
                        # the first features are in the bound already
                        v, scanned = _linf_scan(q, r, acc_lin[g, ln], Qs.shape[1], thr)
                    else:
                        v, scanned, pruned = _l1_second(q, r, i, j, Qg, Qa, Qm, Rg, Ra, Rm, integer, slack, shrink, thr)
                        if pruned:
                            n_group += 1
                            continue
                    n_scanned += scanned
                    if v >= thr:
                        n_abandon += 1
                        continue
                    n_full += 1
                    if fixed:
                        found = _keep_pair(out_q, out_j, out_v, b, found, cap, i, j, v)
                    else:
                        _insert(out_d[i, s], out_i[i, s], v, j)
                        thr0 = out_d[i, 0, k - 1]
        out_n[b] = found
        _store_counts(counts, b, n_label, n_stage1, n_group, n_abandon, n_full, n_scanned)


def feature_order(reference: np.ndarray, sample: int = 2048) -> np.ndarray:
    """A fixed random order of the features, the three quarters with the highest variance
    (estimated on at most ``sample`` evenly spaced rows) first: differences between natural
    images cluster in space, so a spread-out order reaches a linf threshold after a few
    features, and near-constant features (MNIST's border) go last."""
    d = reference.shape[1]
    rows = np.linspace(0, reference.shape[0] - 1, min(sample, reference.shape[0])).astype(np.int64)
    var = np.zeros(d)
    for s in range(0, rows.size, 256):
        b = reference[rows[s : s + 256]].astype(np.float64)
        var += ((b - b.mean(axis=0)) ** 2).sum(axis=0)
    rng = np.random.default_rng(0)
    low = var <= np.quantile(var, 0.25) if d >= 4 else np.zeros(d, dtype=bool)
    return np.concatenate([rng.permutation(np.flatnonzero(~low)), rng.permutation(np.flatnonzero(low))])


def permuted_columns(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """C-contiguous copy of ``x[:, perm]``, rows in parallel and without temporaries
    (numpy's fancy indexing of columns runs on one thread, many times slower)."""
    return _permuted_columns(np.ascontiguousarray(x), np.ascontiguousarray(perm, dtype=np.int64))


@njit(parallel=True, cache=True)
def _permuted_columns(x, perm):
    n = x.shape[0]
    out = np.empty((n, perm.size), dtype=x.dtype)
    for i in prange(n):
        row = x[i]
        o = out[i]
        for t in range(perm.size):
            o[t] = row[perm[t]]
    return out


def transposed_blocks(x: np.ndarray) -> np.ndarray:
    """(ceil(n / LANES), f, LANES) copy of ``x`` (n, f): LANES consecutive rows side by side,
    so a bound over f features is computed for LANES rows with vertical vector operations
    (missing rows of the last block are zeros and never read back)."""
    n, f = x.shape
    nb = -(-n // LANES)
    out = np.zeros((nb, f, LANES), dtype=x.dtype)
    full = n // LANES
    out[:full] = x[: full * LANES].reshape(full, LANES, f).transpose(0, 2, 1)
    if full < nb:
        out[full, :, : n - full * LANES] = x[full * LANES :].T
    return out


def group_sums(x: np.ndarray, size: int = GROUP, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Sums of consecutive groups of ``size`` (<= 257) features (uint16 for uint8 data,
    float64 otherwise; the last group is padded with zeros) and the float64 l1 norm of every
    row (zeros for uint8, where the sums are exact), ``block`` rows at a time."""
    n, d = x.shape
    ng = max(1, -(-d // size))
    integer = x.dtype == np.uint8
    sums = np.zeros((n, ng), dtype=np.uint16 if integer else np.float64)
    norms = np.zeros(n)
    acc = np.uint16 if integer else np.float64
    for s in range(0, n, block):
        b = x[s : s + block]
        if ng * size != d:
            padded = np.zeros((b.shape[0], ng * size), dtype=b.dtype)
            padded[:, :d] = b
            b = padded
        sums[s : s + block] = b.reshape(b.shape[0], ng, size).sum(axis=2, dtype=acc)
        if not integer:
            norms[s : s + block] = np.abs(b).sum(axis=1, dtype=np.float64)
    return sums, norms


@njit(parallel=True, cache=True, nogil=True)
def _fine_means_kernel(x, out):
    n, d = x.shape
    full = d // FINE
    for i in prange(n):
        row = x[i]
        dst = out[i]
        for g in range(full):
            acc = np.uint16(0)
            for t in range(FINE):
                acc += np.uint16(row[g * FINE + t])
            dst[g] = np.uint8(acc // FINE)
        if full * FINE < d:
            acc = np.uint16(0)
            for t in range(full * FINE, d):
                acc += np.uint16(row[t])
            dst[full] = np.uint8(acc // FINE)


def fine_means(x: np.ndarray) -> np.ndarray:
    """uint8 rows: the floor means of groups of :data:`FINE` consecutive features (the last
    group padded with zeros), one uint8 each, padded with zero columns to a multiple of
    :data:`CHUNK` (the read width of :func:`_fine_bound`; zeros on both sides add nothing)."""
    groups = -(-x.shape[1] // FINE)
    out = np.zeros((x.shape[0], -(-groups // CHUNK) * CHUNK), dtype=np.uint8)
    if x.shape[0]:
        _fine_means_kernel(x, out)
    return out


_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))


def _check(queries, query_labels, reference, reference_labels, p, k, slot_of_row, n_slots):
    if not (math.isinf(p) or p == 1):
        raise SepcheckError(f"p={p!r} is not supported by the SIMD kernel: use p=inf or p=1")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SepcheckError(f"k={k!r} is invalid: give a positive integer")
    for name, a in (("queries", queries), ("reference", reference)):
        if not isinstance(a, np.ndarray) or a.ndim != 2 or not a.flags.c_contiguous:
            raise SepcheckError(f"{name} must be a C-contiguous 2-D numpy array (rows x features)")
        if a.dtype not in _DTYPES:
            raise SepcheckError(f"{name} has dtype {a.dtype}: convert it to uint8, float32 or float64")
    if queries.dtype != reference.dtype:
        raise SepcheckError(f"queries are {queries.dtype} but the reference is {reference.dtype}: "
                            "give both the same dtype")
    if queries.shape[1] != reference.shape[1]:
        raise SepcheckError(f"queries have {queries.shape[1]} features but the reference has "
                            f"{reference.shape[1]}: give both the same features")
    if reference_labels.shape != (reference.shape[0],):
        raise SepcheckError("reference_labels must have one label per reference row")
    if slot_of_row is None:
        if query_labels is None or query_labels.shape != (queries.shape[0],):
            raise SepcheckError("query_labels must have one label per query row")
    else:
        if slot_of_row.shape != (reference.shape[0],):
            raise SepcheckError("slot_of_row must have one slot per reference row")
        if slot_of_row.size and (slot_of_row.min() < 0 or slot_of_row.max() >= n_slots):
            raise SepcheckError(f"slot_of_row must lie in 0..{n_slots - 1} (n_slots={n_slots})")


def search_simd(
    queries: np.ndarray,
    query_labels: np.ndarray | None,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    *,
    p: float,
    k: int,
    slot_of_row: np.ndarray | None = None,
    n_slots: int = 1,
    progress: Callable[[int], None] | None = None,
    seed: np.ndarray | None = None,
    ordered: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact k nearest rows per query and slot, linf or l1, on the CPU vector units.

    Parameters
    ----------
    queries : ndarray (m, d)
        C-contiguous, uint8, float32 or float64 (the reference's dtype).
    query_labels : ndarray (m,) int64 or None
        Labels of the queries (OTHER_LABEL grouping); unused when ``slot_of_row`` is given.
    reference : ndarray (n, d)
        C-contiguous, same dtype as ``queries``.
    reference_labels : ndarray (n,) int64
    p : float
        ``math.inf`` (linf) or ``1.0`` (l1).
    k : int
        Rows kept per query and slot.
    slot_of_row : ndarray (n,) int64 or None
        None: OTHER_LABEL (one slot; row j counts for query i iff its label differs).
        Otherwise BY_CLASS: the slot 0..n_slots-1 of every reference row.
    n_slots : int
        Number of slots S when ``slot_of_row`` is given.
    progress : callable or None
        Called with the number of queries finished after every batch.
    seed : ndarray (m, S) float64 or None
        Distances (raw units) already reached by k rows of lower index (a streamed search's
        earlier blocks): only rows strictly closer are searched for, and the kernels prune
        against it from the start. Slots that find fewer than k such rows are padded with
        (seed, -1) instead of (+inf, -1).
    ordered : bool
        linf: the caller has put the features of queries and reference in a
        :func:`feature_order` already (a streamed search does it once per block, not once
        per block pair); no permuted copies are made here.

    Returns
    -------
    dist : ndarray (m, S, k) float64
        Raw distances ascending (uint8: integers), +inf where fewer than k rows exist.
    idx : ndarray (m, S, k) int64
        Reference rows, lowest index first on ties, -1 where missing.
    info : dict
        ``pairs``: pairs pruned by the first bound, skipped by label, pruned by the l1 second
        bound (``group``: the fine means for uint8, the group sums for float), abandoned
        during the scan, fully computed, and the features scanned after the
        first bound; ``extra_bytes``: the memory of the copies the search keeps.
    """
    rl = np.ascontiguousarray(reference_labels, dtype=np.int64)
    ql = None if query_labels is None else np.ascontiguousarray(query_labels, dtype=np.int64)
    slot = None if slot_of_row is None else np.ascontiguousarray(slot_of_row, dtype=np.int64)
    _check(queries, ql, reference, rl, p, k, slot, n_slots)
    m, S = queries.shape[0], (int(n_slots) if slot is not None else 1)
    out_d, out_i = _knn_outputs(m, S, int(k), seed)
    pairs = np.zeros(len(_PAIR_NAMES), dtype=np.int64)
    extra = 0
    if m and reference.shape[0] and S:
        queries, prep = _prepared(queries, reference, p, ordered)
        extra = prep.extra_bytes
        _knn_batches(prep, queries, ql, rl, slot, out_d, out_i, pairs, progress)
    return out_d, out_i, {"pairs": dict(zip(_PAIR_NAMES, pairs.tolist(), strict=True)), "extra_bytes": extra}


def _knn_outputs(m: int, S: int, k: int, seed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The (m, S, k) distances and indices a k-NN search starts from: (+inf, or the
    ``seed`` of its slot; -1)."""
    out_d = np.full((m, S, k), np.inf)
    if seed is not None:
        out_d[:] = np.asarray(seed, dtype=np.float64).reshape(m, S, 1)
    out_i = np.full((m, S, k), -1, dtype=np.int64)
    return out_d, out_i


def _knn_batches(
    prep: _Prepared,
    queries: np.ndarray,
    ql: np.ndarray | None,
    rl: np.ndarray,
    slot: np.ndarray | None,
    out_d: np.ndarray,
    out_i: np.ndarray,
    pairs: np.ndarray,
    progress: Callable[[int], None] | None,
) -> None:
    """:func:`_search_kernel` (k-NN) over batches of :data:`QUERY_BATCH` queries into
    ``out_d``/``out_i``; its counters added to ``pairs``. ``slot`` None: OTHER_LABEL (by
    ``ql``); otherwise BY_CLASS (``ql`` unused, may be None)."""
    m = queries.shape[0]
    by_slot = slot is not None
    if ql is None:
        ql = np.zeros(m, dtype=np.int64)
    if slot is None:
        slot = np.zeros(1, dtype=np.int64)
    for s in range(0, m, QUERY_BATCH):
        sl = slice(s, min(s + QUERY_BATCH, m))
        qv = prep.query_values(queries[sl])
        counts = np.zeros((-(-qv[0].shape[0] // QUERY_BLOCK), len(_PAIR_NAMES)), dtype=np.int64)
        _search_kernel(*qv, ql[sl], *prep.row_values, rl, slot, by_slot, prep.linf, prep.integer,
                       out_d[sl], out_i[sl], counts, False, math.inf, *_no_pairs(counts.shape[0]))
        pairs += counts.sum(axis=0)
        if progress is not None:
            progress(qv[0].shape[0])


@dataclass(frozen=True)
class _Prepared:
    """The reference as the kernels read it: ``R`` (linf: columns in :func:`feature_order`),
    ``Rs`` the transposed first-bound values, ``Rg``/``Ra`` the float l1 group sums and
    norms, ``Rm`` the uint8 l1 fine means (:func:`fine_means`; placeholders where unused, so
    every case shares one compiled kernel per dtype)."""

    R: np.ndarray
    Rs: np.ndarray
    Rg: np.ndarray
    Ra: np.ndarray
    Rm: np.ndarray
    perm: np.ndarray | None
    linf: bool
    integer: bool

    @property
    def extra_bytes(self) -> int:
        return ((self.R.nbytes if self.perm is not None else 0) + self.Rs.nbytes + self.Rg.nbytes
                + self.Ra.nbytes + self.Rm.nbytes)

    @property
    def row_values(self) -> tuple[np.ndarray, ...]:
        """(R, Rs, Rg, Ra, Rm): the reference arguments of :func:`_search_kernel`."""
        return self.R, self.Rs, self.Rg, self.Ra, self.Rm

    def first_bound_values(self, x: np.ndarray) -> np.ndarray:
        """First PREFIX features (linf, already permuted) or coarse group sums (l1)."""
        if self.linf:
            return np.ascontiguousarray(x[:, :PREFIX], dtype=np.uint8 if self.integer else np.float64)
        return group_sums(x, COARSE)[0]

    def query_values(self, queries: np.ndarray) -> tuple[np.ndarray, ...]:
        """(Q, Qs, Qg, Qa, Qm) of a batch of queries, as the kernels read them (the
        placeholders of the reference where unused)."""
        Q = permuted_columns(queries, self.perm) if self.perm is not None else queries
        Qg, Qa, Qm = self.Rg, self.Ra, self.Rm
        if not self.linf and self.integer:
            Qm = fine_means(Q)
        elif not self.linf:
            Qg, Qa = group_sums(Q)
        return Q, self.first_bound_values(Q), Qg, Qa, Qm


def _prepared(
    queries: np.ndarray, reference: np.ndarray, p: float, ordered: bool = False
) -> tuple[np.ndarray, _Prepared]:
    """(queries, the prepared reference) for the kernels; rows without features become one
    zero feature (every distance is 0). ``ordered``: linf features already in a
    :func:`feature_order` (the caller's; no permuted copy here)."""
    if queries.shape[1] == 0:
        queries = np.zeros((queries.shape[0], 1), dtype=queries.dtype)
        reference = np.zeros((reference.shape[0], 1), dtype=reference.dtype)
    linf = math.isinf(p)
    integer = queries.dtype == np.uint8
    perm = None
    # placeholders of the arrays a case does not read (one compiled kernel per dtype)
    Rg, Ra = np.zeros((1, 1), dtype=np.uint16 if integer else np.float64), np.zeros(1)
    Rm = np.zeros((1, CHUNK), dtype=np.uint8)
    if linf:
        # a fixed random feature order: differences of natural images cluster in space, so
        # a spread-out order reaches the threshold after a few features, not hundreds
        if not ordered:
            perm = feature_order(reference)
            reference = permuted_columns(reference, perm)
    elif integer:
        Rm = fine_means(reference)
    else:
        Rg, Ra = group_sums(reference)
    prep = _Prepared(reference, np.empty(0), Rg, Ra, Rm, perm, linf, integer)
    return queries, dataclasses.replace(prep, Rs=transposed_blocks(prep.first_bound_values(reference)))


def radius_simd(
    queries: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    *,
    p: float,
    threshold: float,
    on_batch: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray], None],
    max_pairs: int,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Every (query, reference row) pair of different labels at linf or l1 distance <=
    ``threshold`` (raw units; closed), with the bounds of :func:`search_simd` pruning
    against the fixed threshold from the first row on.

    ``on_batch(qs, n, rows, cols, values)`` receives each batch of :data:`QUERY_BATCH`
    queries (rows ``qs .. qs + n``) once, its pairs in any order: absolute query rows,
    reference rows and the distances in raw units, exact for uint8 and for linf (float l1
    sums may differ from another summation order in the last bits). ``max_pairs``: pairs a
    batch may buffer at first (a query block that finds more is rerun with room for all).
    Returns ``{"pairs": counters, "extra_bytes": bytes of the copies kept}``.
    """
    rl = np.ascontiguousarray(reference_labels, dtype=np.int64)
    ql = np.ascontiguousarray(query_labels, dtype=np.int64)
    _check(queries, ql, reference, rl, p, 1, None, 1)
    m = queries.shape[0]
    pairs = np.zeros(len(_PAIR_NAMES), dtype=np.int64)
    info = {"pairs": {}, "extra_bytes": 0}
    if m and reference.shape[0]:
        queries, prep = _prepared(queries, reference, p)
        info["extra_bytes"] = prep.extra_bytes
        stop = math.inf if math.isinf(threshold) else float(np.nextafter(threshold, math.inf))
        for s in range(0, m, QUERY_BATCH):
            n = min(QUERY_BATCH, m - s)
            rows, cols, vals = _radius_batch(prep, queries[s : s + n], ql[s : s + n], rl, stop,
                                             max_pairs, pairs)
            on_batch(s, n, rows + s, cols, vals)
            if progress is not None:
                progress(n)
    info["pairs"] = dict(zip(_PAIR_NAMES, pairs.tolist(), strict=True))
    return info


def _no_pairs(blocks: int) -> tuple[np.ndarray, ...]:
    """Placeholder pair buffers of a k-NN call of :func:`_search_kernel` (room for none)."""
    return (np.empty((blocks, 0), dtype=np.int64), np.empty((blocks, 0), dtype=np.int64),
            np.empty((blocks, 0)), np.zeros(blocks, dtype=np.int64))


def _radius_call(prep, qv, ql, rl, stop, out_q, out_j, out_v, out_n, counts):
    """:func:`_search_kernel` in radius mode (OTHER_LABEL, no k-best outputs)."""
    _search_kernel(*qv, ql, *prep.row_values, rl, np.zeros(1, dtype=np.int64),
                   False, prep.linf, prep.integer, np.empty((1, 1, 1)), np.empty((1, 1, 1), dtype=np.int64),
                   counts, True, stop, out_q, out_j, out_v, out_n)


def _radius_batch(prep, queries, ql, rl, stop, max_pairs, pairs):
    """The pairs of one batch: (rows within the batch, cols, values); blocks that overflow
    their share of ``max_pairs`` are rerun alone with room for all their pairs."""
    qv = prep.query_values(queries)
    m = qv[0].shape[0]
    nb = -(-m // QUERY_BLOCK)
    cap = max(1, max_pairs // nb)
    out_q = np.empty((nb, cap), dtype=np.int64)
    out_j = np.empty((nb, cap), dtype=np.int64)
    out_v = np.empty((nb, cap))
    out_n = np.zeros(nb, dtype=np.int64)
    counts = np.zeros((nb, len(_PAIR_NAMES)), dtype=np.int64)
    _radius_call(prep, qv, ql, rl, stop, out_q, out_j, out_v, out_n, counts)
    pairs += counts.sum(axis=0)
    parts = []
    for b in range(nb):
        k = int(out_n[b])
        if k <= cap:
            parts.append((out_q[b, :k], out_j[b, :k], out_v[b, :k]))
            continue
        sl = slice(b * QUERY_BLOCK, (b + 1) * QUERY_BLOCK)
        bq = np.empty((1, k), dtype=np.int64)
        bj = np.empty((1, k), dtype=np.int64)
        bv = np.empty((1, k))
        # the rows of this block (placeholders, one row, stay whole)
        sub = tuple(x[sl] if x.shape[0] == m else x for x in qv)
        _radius_call(prep, sub, ql[sl], rl, stop, bq, bj, bv, np.zeros(1, dtype=np.int64), np.zeros_like(counts[:1]))
        parts.append((bq[0] + b * QUERY_BLOCK, bj[0], bv[0]))
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0)
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))
