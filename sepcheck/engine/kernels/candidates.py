"""Turning approximate candidates into an exact answer.

Approximate backends (a float32 GEMM for l2, faiss) return, per query, the candidates with
the smallest approximate distance and a guaranteed bound ``err`` on the approximation
error. The candidates are reranked exactly; a query is *complete* when every reference
row that was not a candidate is provably farther than the exact k-th distance. Queries
that are not complete are recomputed by an exact brute force, so the answer is always
exact. Everything here works on slots (m, S, c) and so serves both groupings.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..problem import Problem
from .exact import pair_distances
from .select import sort_candidates

#: float32 unit roundoff
U32 = 2.0**-24
#: float64 unit roundoff
U64 = 2.0**-53
#: candidates kept per (query, slot) beyond k on every approximate path (ties and rounding
#: slack); a query whose answer is not provably among them is recomputed exactly
EXTRA_CANDIDATES = 15


def gemm_sqdist_error(
    dim: int, sq_norm_q: np.ndarray, max_sq_norm_r: float, unit: float
) -> np.ndarray:
    """Bound on |fl(|q|^2 + |r|^2 - 2 q.r) - |q - r|^2| for a GEMM in a format with roundoff
    ``unit``: (2 gamma_d + 4u)(|q|^2 + |r|^2), gamma_d = d u / (1 - d u), doubled for safety.
    Holds for any summation order (blocked, FMA or pairwise)."""
    gamma = dim * unit / max(1e-300, 1.0 - dim * unit)
    return 2.0 * (2.0 * gamma + 4.0 * unit) * (sq_norm_q + max_sq_norm_r)


def prune(cand: np.ndarray, approx: np.ndarray, err: np.ndarray, k: int) -> np.ndarray:
    """Drop candidates that provably cannot be among the k best of their slot.

    ``cand``/``approx`` have shape (m, S, c), ``err`` (m,). The k candidates with the
    smallest approximate values have exact values <= A_k + err (A_k: the k-th smallest
    approximate value), so the exact k-th distance is at most A_k + err; a candidate with
    approx > A_k + 2 err is exactly farther than that and can neither enter nor tie.
    ``approx`` is +inf where ``cand`` is -1; candidates are distinct rows. Returns ``cand``
    with the dropped entries set to -1.
    """
    if cand.shape[-1] <= k:
        return cand
    a_k = np.partition(approx, k - 1, axis=-1)[..., k - 1 : k]
    keep = approx <= a_k + 2.0 * err[:, None, None]
    return np.where(keep, cand, -1)


def finish(
    problem: Problem,
    cand: np.ndarray,
    bound: np.ndarray,
    power: float,
    brute_force: Callable[[Problem], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact top-k per slot from candidates, for either grouping.

    cand: (m, S, c) reference indices (-1 = none). bound: (m, S) such that every reference
    row of the slot *not* in ``cand[i, s]`` has exact ``distance ** power >= bound[i, s]``
    (+inf when the candidates hold every row of the slot). A query is complete when in
    every slot ``bound`` is strictly above its exact k-th ``distance ** power``: then no
    other row can beat or tie it. Incomplete queries are recomputed by ``brute_force``
    (an exact search of the same grouping, results (m', S, k)).
    Returns (distances (m, S, k), indices (m, S, k), number of queries recomputed).
    """
    m, S, c = cand.shape
    exact = _sparse_pair_distances(problem, cand.reshape(m, S * c)).reshape(m, S, c)
    dist, idx = sort_candidates(exact, cand, problem.k)
    kth = dist[:, :, -1]
    kth_cmp = kth if power == 1 else kth**power
    # complete when the best row outside the candidates is strictly farther than the k-th
    complete = (bound > kth_cmp * (1.0 + 4 * U64)).all(axis=1)
    bad = np.flatnonzero(~complete)
    if bad.size:
        bd, bi = brute_force(problem.subset(bad))
        dist[bad] = bd
        idx[bad] = bi
    return dist, idx, int(bad.size)


def _sparse_pair_distances(problem: Problem, cand: np.ndarray) -> np.ndarray:
    """pair_distances computed only for the valid (>= 0) candidates, packed per row."""
    valid = cand >= 0
    width = int(valid.sum(axis=1).max()) if cand.size else 0
    if width == cand.shape[1]:
        return pair_distances(problem.queries, problem.reference, cand, problem.p)
    # move valid entries to the front of each row (stable), compute on the packed block
    order = np.argsort(~valid, axis=1, kind="stable")
    packed = np.take_along_axis(cand, order, axis=1)[:, :width]
    d_packed = pair_distances(problem.queries, problem.reference, packed, problem.p)
    out = np.full(cand.shape, np.inf)
    np.put_along_axis(out, order[:, :width], d_packed, axis=1)
    return out
