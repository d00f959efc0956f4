"""Exact l2 search pruned by a projection lower bound.

For a d x m matrix P whose largest singular value is at most ``sigma``,
``||P^T (q - r)||_2 <= sigma ||q - r||_2``: the distance of two projected rows, divided by
``sigma``, is a lower bound of their l2 distance. With P the top-m principal directions of a
seeded sample of the reference (a randomised SVD, :func:`fit`), that bound is close to the
distance for natural images, and a GEMM of m columns (instead of d) bounds every pair.

The search, per block of queries (:func:`search`):

1. *bounds*: a float32 GEMM of the projected rows, extended by a column of ones and one of
   squared norms (``[q, 1] . [-2 r, |r|^2]``), gives every pair's squared projected distance
   less ``|q|^2`` at once, with a proven error bound; the scans below skip whole chunks of
   :data:`LANES` pairs by their smallest value (a vectorised minimum);
2. *candidates*: per (query, slot) the ``k + EXTRA_CANDIDATES`` rows of smallest bound get
   their exact distance, whose k-th best ``U`` bounds the answer from above;
3. *survivors*: every other row whose bound, widened by the proven rounding margins, is not
   strictly beyond ``U`` gets its exact distance too (uint8: an exact integer sum, abandoned
   once beyond the current k-th best, which tightens ``U`` as it goes; float data: the one
   exact routine :func:`sepcheck.engine.kernels.exact.pair_distances`); a pruned row is provably
   farther than the k-th best and can neither enter nor tie;
4. the k best per slot by (distance, index): ties go to the lowest index.

Margins (all proven, so that no true neighbour is ever pruned): ``sigma`` and the spectral
norm of ``|P|`` are computed in float64 and rounded up; the projection of a row has an
error of at most ``gamma_d * ||abs(P)||_2 * ||x - center||_2`` in float32 (uint8 rows are
centred on an integer vector, exactly), plus the rounding of float input to float32; the
GEMM of the projected rows adds :func:`sepcheck.engine.kernels.candidates.gemm_sqdist_error`. Each
bound is doubled.

Memory: the projected rows (n x m float32, both sides), one (query block x reference
block) float32 tile and the sample the directions are fitted on (at most
:data:`SAMPLE_ROWS` rows in float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload

from ..kernels.candidates import U32, U64, gemm_sqdist_error
from ..problem import Problem
from .torch_backend import float32_matmul_is_exact

#: rows of the reference the directions are fitted on (a seeded sample)
SAMPLE_ROWS = 2048
#: seed of the sample and of the randomised SVD
SEED = 0
#: candidates per (query, slot) beyond k whose exact distances give the first threshold
EXTRA_CANDIDATES = 3
#: features per exact chunk between two early-abandon tests (uint8 squares fit int32)
CHUNK = 256
#: fewest queries per GEMM block that the memory estimate allows for
MIN_BLOCK = 16
#: OTHER_LABEL references with more labels than this are searched as one group, each
#: pair's label checked (radius searches of every pair give every row its own label)
MAX_GROUPS = 1024


def default_dims(d: int) -> tuple[int, int]:
    """(directions in the GEMM bound, directions stored for the refined bound) for rows of
    ``d`` features."""
    return int(min(d, 63)), int(min(d, 128))


def resolve_dims(problem: Problem, dims: tuple[int, int] | None) -> tuple[int, int]:
    """(g, M) of a search: ``dims`` or :func:`default_dims`, each within 1..features and
    M >= g."""
    g, M = dims if dims is not None else default_dims(problem.dim)
    g, M = max(1, min(g, problem.dim)), max(1, min(M, problem.dim))
    return g, max(g, M)


def query_block(problem: Problem, budget: int, block_size: int | None, entry_bytes: int) -> int:
    """Queries per block: ``block_size``, or as many (up to 512, at least
    :data:`MIN_BLOCK`) as fit a tile of ``entry_bytes`` per pair in a quarter of ``budget``;
    never more than the queries."""
    fit = (budget // 4) // max(1, entry_bytes * problem.n_ref)
    bq = block_size or max(MIN_BLOCK, min(problem.n_query, 512, fit))
    return max(1, min(bq, problem.n_query))


@dataclass(frozen=True)
class Projection:
    """A fitted projection: ``matrix`` (d, m) float32 (orthonormal columns up to rounding,
    in decreasing order of variance), ``center`` (d,) float32 (integers for uint8 data,
    so that centring is exact), ``sigma`` >= the largest singular value of ``matrix`` and
    ``abs_sigma`` >= that of ``abs(matrix)`` (both float64, rounded up)."""

    matrix: np.ndarray
    center: np.ndarray
    sigma: float
    abs_sigma: float

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


def fit(reference: np.ndarray, m: int, seed: int = SEED, sample: int | None = None) -> Projection:
    """The top-``m`` principal directions of a seeded sample of ``sample`` (default
    :data:`SAMPLE_ROWS`) ``reference`` rows (any directions give a valid bound: the sample
    only decides how tight it is)."""
    sample = SAMPLE_ROWS if sample is None else sample
    n, d = reference.shape
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, sample), replace=False))
    X = torch.from_numpy(reference[rows]).to(torch.float32)
    mu = X.numpy().mean(axis=0, dtype=np.float64)
    center = (np.round(mu) if reference.dtype == np.uint8 else mu).astype(np.float32)
    X.sub_(torch.from_numpy(center))
    m = max(1, min(m, d))
    P = _top_directions(X, m, rng).astype(np.float32)
    P64 = P.astype(np.float64)
    return Projection(np.ascontiguousarray(P), center, _spectral_bound(P64), _spectral_bound(np.abs(P64)))


def _spectral_bound(A: np.ndarray) -> float:
    """An upper bound of the largest singular value of ``A`` (d, m): the square root of the
    largest eigenvalue of the float64 Gram matrix, widened by its rounding error (at most
    d u ||A||^2 for the product, m u for the eigenvalue), with a wide margin."""
    # linear algebra in torch, never numpy's: numpy's OpenBLAS threads busy-wait after a
    # call and take the cores from the torch and numba threads of the search that follows
    T = torch.from_numpy(A)
    lam = float(torch.linalg.eigvalsh(T.T @ T).max()) if A.size else 0.0
    fro2 = float(np.einsum("ij,ij->", A, A))
    lam += (A.shape[0] + A.shape[1] + 8) * U64 * fro2 * 16
    return math.sqrt(max(lam, 0.0)) * (1.0 + 1e-9) + 1e-300


def _orthonormal(Y: torch.Tensor) -> torch.Tensor:
    """Orthonormal columns spanning (most of) ``Y``'s range, by the eigenvectors of its
    small Gram matrix (no tall QR: LAPACK's is slow on some builds)."""
    lam, W = (t.numpy() for t in torch.linalg.eigh((Y.T @ Y).double()))  # only the span matters
    keep = lam > lam.max(initial=0.0) * 1e-10
    if not keep.any():
        return torch.zeros((Y.shape[0], 0), dtype=Y.dtype)
    return Y @ torch.from_numpy((W[:, keep] / np.sqrt(lam[keep])).astype(np.float32))


def _top_directions(X: torch.Tensor, m: int, rng: np.random.Generator, iters: int = 1) -> np.ndarray:
    """(d, m) orthonormal top right singular vectors of ``X`` (s, d) float32 by a randomised
    SVD (Halko, Martinsson and Tropp: a Gaussian sketch, ``iters`` power iterations),
    padded with zero columns when ``X`` has fewer independent directions."""
    s, d = X.shape
    width = min(d, m + 16)
    Y = _orthonormal(X @ torch.from_numpy(rng.standard_normal((d, width)).astype(np.float32)))
    for _ in range(iters):
        Z = _orthonormal(X.T @ Y)
        Y = _orthonormal(X @ Z)
    B = (Y.T @ X).double()  # (width', d)
    lam, U = (t.numpy() for t in torch.linalg.eigh(B @ B.T))
    order = np.argsort(lam)[::-1]
    lam, U = lam[order], U[:, order]
    keep = lam > lam.max(initial=0.0) * 1e-12
    V = (B.T @ torch.from_numpy(np.ascontiguousarray(U[:, keep]))).numpy() / np.sqrt(lam[keep])
    V = V[:, :m]
    if V.shape[1] < m:
        V = np.hstack([V, np.zeros((d, m - V.shape[1]))])
    return V


def project(proj: Projection, X: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Projected rows (n, m) float32 and, per row, a bound (float64) on the l2 norm of
    their error against ``matrix^T (x - center)`` in exact arithmetic on the input values.

    The error of a float32 product of d terms is at most gamma_d sum |P_tc| |x_t| per
    direction, whose norm over the directions is at most gamma_d ||abs(P)||_2 ||x||_2;
    float input adds its rounding to float32 and the centring's (each relative, at most u
    per element). Norms are computed in float32 and widened by their own error bound."""
    n, d = X.shape
    m = proj.dim
    out = np.empty((n, m), dtype=np.float32)
    err = np.empty(n)
    P = torch.from_numpy(proj.matrix)
    center = torch.from_numpy(proj.center)
    gamma = d * U32 / (1.0 - d * U32)
    widen = 1.0 + 2.0 * gamma + 4.0 * U32  # a float32 norm of d terms, rounded up
    exact_center = X.dtype == np.uint8
    buf = torch.empty((min(chunk, n), d), dtype=torch.float32)  # reused: no page faults
    for s in range(0, n, chunk):
        x = torch.from_numpy(X[s : s + chunk])
        b = buf[: x.shape[0]].copy_(x).sub_(center)  # exact for uint8 (integers < 2**24)
        torch.mm(b, P, out=torch.from_numpy(out[s : s + chunk]))
        nb = torch.linalg.vector_norm(b, dim=1).double().numpy() * widen
        e = gamma * proj.abs_sigma * nb
        if not exact_center:
            # float32 rounding of the input and of the centring: elementwise at most
            # u|x| and u|x - center| (relative, so their norms bound the vectors)
            nx = torch.linalg.vector_norm(x.double(), dim=1).numpy()
            e += proj.sigma * U32 * (nx + nb) * (1.0 + 4 * U32)
        err[s : s + chunk] = 2.0 * e + 1e-300
    return out, err


def memory_needed(problem: Problem, dims: tuple[int, int] | None = None) -> int:
    """Bytes a projection search keeps besides its output (an upper estimate): the fitting
    sample, the projected rows (float32: the reference's as computed and grouped by label,
    the queries'), their GEMM copies, the projection's buffer, per-row norms and bounds,
    and the GEMM tile of one query block of :data:`MIN_BLOCK` queries (larger blocks take
    at most a quarter of the budget)."""
    g, M = resolve_dims(problem, dims)
    n, d = problem.n_ref, problem.dim
    q = 0 if problem.self_mode else problem.n_query
    # the sample in its own dtype and as float32, and the sketches (width M + 16)
    fit = min(n, SAMPLE_ROWS) * (d * (4 + problem.reference.itemsize) + (M + 16) * 8) + d * (M + 16) * 16
    # projected rows as computed and grouped (2n + q rows of M), GEMM copies (n + q rows of
    # g + 1, float64 where float32 matmul is not exact), the projection's buffer, norms and
    # bounds
    gemm = 4 if float32_matmul_is_exact(torch.device("cpu")) else 8
    rows = (2 * n + q) * M * 4 + (n + q) * ((g + 1) * gemm + 48) + min(n + q, 1024) * d * 4
    return fit + rows + MIN_BLOCK * n * 4 + 4 * 2**20


def search(
    problem: Problem,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    dims: tuple[int, int] | None = None,
    give_up: float = np.inf,
    first_block: int | None = None,
    margin: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, dict, int]:
    """Exact l2 search of either grouping by projection bounds (see the module docstring),
    on the CPU.

    ``dims``: (directions in the GEMM bound, directions stored for the refined bound), by
    default :func:`default_dims`. ``margin`` scales the rounding margins: 1 (the proven
    ones) in every search; tests set 0 to show that the margins are needed.

    Returns (squared distances (m, S, k) float64 raw units, indices (m, S, k), extra,
    done): ``extra`` holds ``l2_path`` ('projection'), ``projection_dims``,
    ``pairs_bounded`` (pairs bounded), ``pairs_refined`` (pairs past the GEMM bound), ``pairs_exact`` (pairs
    whose exact distance was computed, candidates included); ``done`` is the number of
    queries answered: all of them, or fewer when after a block more than ``give_up`` of
    the pairs so far passed the GEMM bound (the bound does not pay on this data: the
    caller searches the rest another way; rows from ``done`` on are not filled).
    ``first_block``: queries in the first block (a small probe for ``give_up``).
    Memory: :func:`memory_needed`; the query blocks take up to a quarter of ``budget``.
    """
    g, M = resolve_dims(problem, dims)
    prep = _prepare(problem, g, M, margin)
    k, S, n = problem.k, problem.n_slots, problem.n_ref
    c = min(n, k + EXTRA_CANDIDATES)
    bq = query_block(problem, budget, block_size, 4)
    buf = torch.empty((bq, n), dtype=prep.Rg.dtype)
    other = not problem.by_class
    out_d = np.empty((problem.n_query, S, k))
    out_i = np.empty((problem.n_query, S, k), dtype=np.int64)
    counts = np.zeros(3, dtype=np.int64)  # pairs bounded, refined, exact
    qs = 0
    while qs < problem.n_query:
        qe = min(problem.n_query, qs + (min(first_block, bq) if first_block and qs == 0 else bq))
        dot = torch.mm(prep.Qg[qs:qe], prep.Rg.T, out=buf[: qe - qs]).numpy()
        bd = np.full((qe - qs, S, k), np.inf)
        bi = np.full((qe - qs, S, k), -1, dtype=np.int64)
        n_ref, n_exact = _block(
            dot, prep.sq_q[qs:qe], prep.Qp[qs:qe], prep.Rp, problem.queries[qs:qe],
            problem.reference, prep.order, prep.bounds, prep.group_label, prep.group_slot,
            prep.pair_check, prep.pair_labels, problem.query_labels[qs:qe], other, c, bd, bi,
            prep.sigma, prep.rel, prep.slack[qs:qe], prep.gerr[qs:qe], g,
        )
        counts += (dot.size, n_ref, n_exact)
        out_d[qs:qe], out_i[qs:qe] = bd, bi
        if progress is not None:
            progress(qe - qs)
        if qe < problem.n_query and counts[1] > give_up * counts[0]:
            return out_d, out_i, _extra(g, M, counts), qe
        qs = qe
    return out_d, out_i, _extra(g, M, counts), problem.n_query


def _extra(g: int, M: int, counts: np.ndarray) -> dict:
    return {
        "l2_path": "projection",
        "projection_dims": [g, M],
        "pairs_bounded": int(counts[0]),
        "pairs_refined": int(counts[1]),
        "pairs_exact": int(counts[2]),
    }


@njit(cache=True, inline="always")
def _limit(u2, sigma, rel, slack):
    """The projected squared distance above which a pair is provably farther than
    sqrt(u2): (sigma sqrt(u2) (1 + rel) + slack)**2, rounded up; +inf when u2 is."""
    if not np.isfinite(u2):
        return np.inf
    t = sigma * math.sqrt(u2) * (1.0 + rel) + slack
    return t * t * (1.0 + 1e-12)


@njit(cache=True, inline="always")
def _sqdist(a, b, limit):
    """Squared l2 distance of two rows in chunks of CHUNK features, or a partial sum beyond
    ``limit`` (abandoned). uint8: an exact integer (int16 differences, int32 chunk sums);
    float: float64 (partial sums of non-negative terms never decrease)."""
    d = a.shape[0]
    acc = _zero(a[0])
    for s in range(0, d, CHUNK):
        e = min(d, s + CHUNK)
        acc += _chunk_sq(a[s:e], b[s:e])
        if acc > limit:
            return acc
    return acc


@njit(cache=True)
def _chunk_sq_int(a, b):
    """Exact sum of squared differences of uint8 features (int16 lanes, int32 sums: at most
    CHUNK * 255**2 < 2**31); a separate function so that LLVM vectorises it."""
    part = np.int32(0)
    for t in range(a.shape[0]):
        x = np.int16(np.int16(a[t]) - np.int16(b[t]))
        part = np.int32(part + np.int32(np.int32(x) * np.int32(x)))
    return np.int64(part)


@njit(cache=True, fastmath={"reassoc"})
def _chunk_sq_float(a, b):
    """Sum of squared differences in float64 (in any order: vectorised; every bound here
    holds for any summation order)."""
    part = 0.0
    for t in range(a.shape[0]):
        x = np.float64(a[t]) - np.float64(b[t])
        part += x * x
    return part


def _is_int(a) -> bool:
    """numba type ``a`` is an integer or an array of integers."""
    return isinstance(getattr(a, "dtype", a), types.Integer)


def _chunk_sq(a, b):  # pragma: no cover - only called inside numba
    """Sum of squared differences: int64 for integer rows, else float64."""
    raise NotImplementedError


def _zero(a):  # pragma: no cover - only called inside numba
    """0 in the accumulator type of rows like ``a``."""
    raise NotImplementedError


overload(_chunk_sq, inline="always")(
    lambda a, b: (lambda a, b: _chunk_sq_int(a, b)) if _is_int(a) else (lambda a, b: _chunk_sq_float(a, b))
)
overload(_zero, inline="always")(
    lambda a: (lambda a: np.int64(0)) if _is_int(a) else (lambda a: 0.0)
)


@njit(cache=True, inline="always")
def _projected_sq(qp, rp, start, limit):
    """Squared distance of two projected rows over directions ``start..`` in float64
    (differences of float32 values are exact) in chunks of 32 directions, or a partial sum
    beyond ``limit``. The first directions are the GEMM's: the callers add its value less
    its error bound instead of computing them again."""
    M = qp.shape[0]
    acc = 0.0
    for s in range(start, M, 32):
        e = min(M, s + 32)
        acc += _chunk_sq_float(qp[s:e], rp[s:e])
        if acc > limit:
            return acc
    return acc


@njit(cache=True, inline="always")
def _gemm_pass(i, j, dot, gate, pair_check, pair_labels, ql):
    """``dot[i, j]`` (the GEMM bound less ``||q_i||^2``) when the pair passes the GEMM gate
    and, with ``pair_check``, has another label; +inf otherwise."""
    w = np.float64(dot[i, j])
    if w > gate or (pair_check and pair_labels[j] == ql[i]):
        return np.inf
    return w


@njit(cache=True, inline="always")
def _insert(bd, bi, s, v, j):
    """Insert (v, j) into slot s of the k best (ascending by (distance, index)) if it
    belongs there; True when the k-th changed."""
    k = bd.shape[1]
    if v > bd[s, k - 1] or (v == bd[s, k - 1] and j > bi[s, k - 1]):
        return False
    pos = k - 1
    while pos > 0 and (bd[s, pos - 1] > v or (bd[s, pos - 1] == v and bi[s, pos - 1] > j)):
        bd[s, pos] = bd[s, pos - 1]
        bi[s, pos] = bi[s, pos - 1]
        pos -= 1
    bd[s, pos] = v
    bi[s, pos] = j
    return True


#: rows per chunk of the GEMM tile whose smallest bound is taken at once (vectorised), so
#: that the scans over every pair skip whole chunks
LANES = 16


@njit(cache=True, fastmath={"nnan", "ninf", "nsz"})
def _chunk_mins(row):
    """Per chunk of :data:`LANES` entries of ``row`` (finite), the smallest (exact: a
    minimum rounds nothing; vectorised)."""
    n = row.shape[0]
    mins = np.empty((n + LANES - 1) // LANES, dtype=row.dtype)
    for ch in range(n // LANES):
        m = row[ch * LANES]
        for t in range(1, LANES):
            m = min(m, row[ch * LANES + t])
        mins[ch] = m
    if n % LANES:
        m = row[n - n % LANES]
        for j in range(n - n % LANES, n):
            m = min(m, row[j])
        mins[-1] = m
    return mins


@njit(cache=True, inline="always")
def _candidates(dot, mins, i, S, c, bounds, group_label, group_slot, other, pair_check, pair_labels, ql):
    """The candidates of query ``i`` in :func:`_block`: per slot, the sorted positions of the
    c smallest GEMM values ``dot[i, j]`` (ascending, ties to the lowest position; -1 where
    the slot has fewer rows), groups and labels skipped as there. ``mins``: the smallest
    value of every chunk of :data:`LANES` positions (:func:`_chunk_mins`)."""
    cv = np.full((S, c), np.inf)
    ci = np.full((S, c), -1, dtype=np.int64)
    for grp in range(group_slot.shape[0]):
        if other and not pair_check and group_label[grp] == ql[i]:
            continue
        s = group_slot[grp]
        lo, hi = bounds[grp], bounds[grp + 1]
        for ch in range(lo // LANES, (hi + LANES - 1) // LANES):
            if mins[ch] >= cv[s, c - 1]:  # no row of the chunk improves the candidates
                continue
            for j in range(max(lo, ch * LANES), min(hi, ch * LANES + LANES)):
                v = np.float64(dot[i, j])
                if v >= cv[s, c - 1]:
                    continue
                if pair_check and pair_labels[j] == ql[i]:
                    continue
                pos = c - 1
                while pos > 0 and cv[s, pos - 1] > v:
                    cv[s, pos] = cv[s, pos - 1]
                    ci[s, pos] = ci[s, pos - 1]
                    pos -= 1
                cv[s, pos] = v
                ci[s, pos] = j
    return ci


@njit(cache=True, inline="always")
def _insert_candidates(q, R, order, ci, best_d, best_i):
    """The exact squared distances of query ``q``'s candidates ``ci`` (sorted positions per
    slot, -1: none; original rows ``order[...]``) into its k best ``best_d``/``best_i``;
    returns the number of distances computed."""
    n = 0
    for s in range(ci.shape[0]):
        for t in range(ci.shape[1]):
            j = ci[s, t]
            if j >= 0:
                _insert(best_d, best_i, s, np.float64(_sqdist(q, R[order[j]], np.inf)), order[j])
                n += 1
    return n


@njit(cache=True, parallel=True, error_model="numpy")
def _block(
    dot, sq_q, Qp, Rp, Q, R, order, bounds, group_label, group_slot, pair_check,
    pair_labels, ql, other, c, bd, bi, sigma, rel, slack, gerr, g,
):
    """One block of queries against every reference row. The reference's projected rows
    (``Rp``, the columns of ``dot``) are grouped by label (OTHER_LABEL) or slot
    (BY_CLASS): group ``g`` holds sorted positions ``bounds[g]..bounds[g+1]`` (original rows
    ``order[...]``); a query skips the group of its own label (with ``pair_check``: one
    group, each pair's label ``pair_labels[j]`` checked instead). ``dot`` (b, n): the GEMM of
    the first directions. Per query: (1) the c rows of smallest GEMM bound per slot get exact
    distances (the first k best); (2) every other row passes three tests, each against the
    current k-th best of its slot: the GEMM bound, the refined bound over all stored
    directions, the exact distance abandoned once beyond it. ``bd``/``bi`` (b, S, k)
    receive the k best squared distances and original indices, ties to the lowest index.
    Returns (pairs refined, pairs computed exactly)."""
    b = dot.shape[0]
    S = bd.shape[1]
    k = bd.shape[2]
    G = group_slot.shape[0]
    n_ref = np.zeros(b, dtype=np.int64)
    n_exact = np.zeros(b, dtype=np.int64)
    for i in prange(b):
        mins = _chunk_mins(dot[i])
        # (1) candidates: the c smallest values of dot[i, j] per slot, their exact distances
        ci = _candidates(
            dot, mins, i, S, c, bounds, group_label, group_slot, other, pair_check, pair_labels, ql
        )
        best_d = bd[i]
        best_i = bi[i]
        n_exact[i] += _insert_candidates(Q[i], R, order, ci, best_d, best_i)
        # (2) every other row, against its slot's limits, which follow the k-th best
        for grp in range(G):
            if other and not pair_check and group_label[grp] == ql[i]:
                continue
            s = group_slot[grp]
            lim = _limit(best_d[s, k - 1], sigma, rel, slack[i])  # on the refined bound
            gate = lim + gerr[i] - sq_q[i]  # on dot[i, j]
            lo, hi = bounds[grp], bounds[grp + 1]
            for ch in range(lo // LANES, (hi + LANES - 1) // LANES):
                if mins[ch] > gate:  # every row of the chunk fails the GEMM gate
                    continue
                for j in range(max(lo, ch * LANES), min(hi, ch * LANES + LANES)):
                    v = _gemm_pass(i, j, dot, gate, pair_check, pair_labels, ql)
                    if v == np.inf:
                        continue
                    seen = False
                    for t in range(c):
                        seen |= ci[s, t] == j
                    if seen:
                        continue
                    n_ref[i] += 1
                    room = lim - (v + sq_q[i] - gerr[i])  # for the directions after the GEMM's
                    if _projected_sq(Qp[i], Rp[j], g, room) > room:
                        continue
                    n_exact[i] += 1
                    kth = best_d[s, k - 1]
                    row = order[j]
                    dd = _sqdist(Q[i], R[row], kth)
                    if dd > kth:
                        continue
                    if _insert(best_d, best_i, s, np.float64(dd), row):
                        lim = _limit(best_d[s, k - 1], sigma, rel, slack[i])
                        gate = lim + gerr[i] - sq_q[i]
    return n_ref.sum(), n_exact.sum()


def radius_pairs(
    problem: Problem,
    budget: int,
    block_size: int | None,
    max_pairs: int,
    threshold: float,
    on_block: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray | None], None],
    progress: Callable[[int], None] | None = None,
    dims: tuple[int, int] | None = None,
) -> dict:
    """Every OTHER_LABEL pair within ``threshold`` (raw units, closed) by projection bounds:
    the GEMM bound and the refined bound prune, survivors get exact squared distances
    (uint8: exact integers compared with ``threshold**2``; float data: a superset kept with
    a relative slack, checked exactly by the caller). ``on_block(qs, n, rows, cols,
    values)`` per query block (absolute query rows; float64 distances in raw units for
    uint8, else None); a block holding more than ``max_pairs`` pairs is handed over in
    parts of at most ``max_pairs`` (single queries may exceed it). Returns counters for
    ``info``."""
    g, M = resolve_dims(problem, dims)
    prep = _prepare(problem, g, M, 1.0)
    n = problem.n_ref
    t2 = threshold * threshold if math.isfinite(threshold) else np.inf
    if not problem.integer:
        t2 *= 1.0 + 8.0 * problem.dim * U64 + 1e-12  # the caller checks every pair exactly
    bq = query_block(problem, budget, block_size, 4)
    buf = torch.empty((bq, n), dtype=prep.Rg.dtype)
    counts = np.zeros(3, dtype=np.int64)
    for qs in range(0, problem.n_query, bq):
        qe = min(problem.n_query, qs + bq)
        dot = torch.mm(prep.Qg[qs:qe], prep.Rg.T, out=buf[: qe - qs]).numpy()
        args = (
            dot, prep.sq_q[qs:qe], prep.Qp[qs:qe], prep.Rp,
            problem.queries[qs:qe], problem.reference, prep.order, prep.bounds,
            prep.group_label, prep.pair_check, prep.pair_labels, problem.query_labels[qs:qe],
            prep.sigma, prep.rel, t2, prep.slack[qs:qe], prep.gerr[qs:qe], g,
        )
        none = np.empty(0, dtype=np.int64)
        at = np.zeros(qe - qs + 1, dtype=np.int64)
        per_query, n_ref, n_exact = _radius_scan(*args, 0, qe - qs, at, none, none, np.empty(0))
        counts += (dot.size, n_ref, n_exact)
        start = np.concatenate([[0], np.cumsum(per_query)])
        a = 0
        while a < qe - qs:  # parts of at most max_pairs pairs (at least one query)
            b = a + 1
            while b < qe - qs and start[b + 1] - start[a] <= max_pairs:
                b += 1
            total = int(start[b] - start[a])
            rows, cols, vals = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64), np.empty(total)
            if total:
                _radius_scan(*args, a, b, start[a:b + 1] - start[a], rows, cols, vals)
            values = np.sqrt(vals) if problem.integer else None
            on_block(qs + a, b - a, rows + qs, cols, values)
            a = b
        if progress is not None:
            progress(qe - qs)
    return _extra(g, M, counts)


@dataclass(frozen=True)
class _Prepared:
    """What every projection search needs once (see :func:`search`): the reference's
    projected rows grouped by label (OTHER_LABEL) or slot (BY_CLASS) (``Rp``; ``sq_r``,
    the squared norms of their first g directions; ``Rg``, the GEMM's operand: those
    directions times -2 and ``sq_r`` rounded to the GEMM's format as a last column, against
    ``Qg``, the queries' first g directions and a column of ones, so that the GEMM gives
    ``sq_r - 2 q.r`` at once); sorted position j is row ``order[j]``,
    group g spans ``bounds[g]..bounds[g+1]`` with ``group_label``/``group_slot``), the
    queries' projected rows in their own order, and the proven margins."""

    Rp: np.ndarray
    Qp: np.ndarray
    Rg: torch.Tensor
    Qg: torch.Tensor
    sq_r: np.ndarray
    sq_q: np.ndarray
    gerr: np.ndarray
    slack: np.ndarray
    rel: float
    sigma: float
    order: np.ndarray
    bounds: np.ndarray
    group_label: np.ndarray
    group_slot: np.ndarray
    #: too many labels for groups (OTHER_LABEL): one group, labels (``pair_labels``,
    #: in the original order, which ``order`` keeps) checked per pair
    pair_check: bool
    pair_labels: np.ndarray


def _prepare(problem: Problem, g: int, M: int, margin: float) -> _Prepared:
    proj = fit(problem.reference, M)
    P, er = project(proj, problem.reference)
    Qp, eq = (P, er) if problem.self_mode else project(proj, problem.queries)
    key = problem.codes if problem.by_class else problem.reference_labels
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
    pair_labels = None
    if not problem.by_class and starts.size > MAX_GROUPS:  # e.g. one label per row
        order, starts, pair_labels = np.arange(key.size), np.zeros(1, dtype=np.int64), key
    bounds = np.r_[starts, order.size].astype(np.int64)
    group_label = key[order][starts].astype(np.int64)
    group_slot = group_label if problem.by_class else np.zeros(starts.size, dtype=np.int64)
    Rp = P[order]
    sq_r = np.einsum("ij,ij->i", Rp[:, :g], Rp[:, :g], dtype=np.float64)
    sq_q = np.einsum("ij,ij->i", Qp[:, :g], Qp[:, :g], dtype=np.float64)
    full32 = float32_matmul_is_exact(torch.device("cpu"))
    # the GEMM of [q, 1] and [-2 r, fl(|r|^2)] (g + 1 terms): its error, the float64 sum of
    # |r|^2 and its rounding to the GEMM's format are within gemm_sqdist_error(g + 1)'s
    # half (the bound is doubled for safety)
    fmt = np.float32 if full32 else np.float64  # float32 matmul in reduced precision: float64
    Rg = np.empty((Rp.shape[0], g + 1), dtype=fmt)
    np.multiply(Rp[:, :g], -2.0, out=Rg[:, :g])
    Rg[:, g] = sq_r
    Qg = np.ones((Qp.shape[0], g + 1), dtype=fmt)
    Qg[:, :g] = Qp[:, :g]
    gerr = margin * gemm_sqdist_error(g + 1, sq_q, float(sq_r.max(initial=0.0)), U32 if full32 else U64)
    Rg, Qg = torch.from_numpy(Rg), torch.from_numpy(Qg)
    slack = margin * (eq + float(er.max(initial=0.0)))
    rel = margin * (1e-12 if problem.integer else 4.0 * problem.dim * U64 + 1e-12)
    return _Prepared(
        Rp, Qp, Rg, Qg, sq_r, sq_q, gerr, slack, rel, proj.sigma, order, bounds, group_label,
        group_slot, pair_labels is not None,
        pair_labels if pair_labels is not None else np.zeros(0, dtype=np.int64),
    )


@njit(cache=True, inline="always")
def _radius_test(i, j, row, Qp, Rp, Q, R, lim, t2, room, g):
    """Pair (query i, sorted position j = reference ``row``) past the GEMM bound (``room``:
    ``lim`` less the GEMM's value less its error bound): -1 when the refined bound prunes
    it or it lies beyond ``t2``, else its exact squared distance; second value 2 when the
    exact distance was computed, else 1."""
    if _projected_sq(Qp[i], Rp[j], g, room) > room:
        return -1.0, 1
    dd = np.float64(_sqdist(Q[i], R[row], t2))
    return (dd if dd <= t2 else -1.0), 2


@njit(cache=True, parallel=True, error_model="numpy")
def _radius_scan(
    dot, sq_q, Qp, Rp, Q, R, order, bounds, group_label, pair_check, pair_labels, ql,
    sigma, rel, t2, slack, gerr, g, a, b, start, rows, cols, vals,
):
    """The pairs within ``t2`` of block rows a..b (groups as in :func:`_block`; the query's
    own label's group skipped). With ``rows`` of size 0 it counts them: returns (pairs per
    query, pairs refined, pairs computed); otherwise it also writes each query's pairs at
    its offset ``start[i - a]``: (block row, reference row, squared distance)."""
    fill = rows.shape[0] > 0
    hits = np.zeros(b - a, dtype=np.int64)
    refined = np.zeros(b - a, dtype=np.int64)
    exact = np.zeros(b - a, dtype=np.int64)
    for i in prange(a, b):
        at = start[i - a]
        lim = _limit(t2, sigma, rel, slack[i])
        gate = lim + gerr[i] - sq_q[i]
        mins = _chunk_mins(dot[i])
        for grp in range(group_label.shape[0]):
            if not pair_check and group_label[grp] == ql[i]:
                continue
            lo, hi = bounds[grp], bounds[grp + 1]
            for ch in range(lo // LANES, (hi + LANES - 1) // LANES):
                if mins[ch] > gate:  # every pair of the chunk fails the GEMM gate
                    continue
                for j in range(max(lo, ch * LANES), min(hi, ch * LANES + LANES)):
                    w = _gemm_pass(i, j, dot, gate, pair_check, pair_labels, ql)
                    if w == np.inf:
                        continue
                    room = lim - (w + sq_q[i] - gerr[i])
                    v, stage = _radius_test(i, j, order[j], Qp, Rp, Q, R, lim, t2, room, g)
                    refined[i - a] += 1
                    exact[i - a] += stage == 2
                    if v >= 0:
                        hits[i - a] += 1
                        if fill:
                            rows[at], cols[at], vals[at] = i, order[j], v
                            at += 1
    return hits, refined.sum(), exact.sum()
