"""The conflict-graph solver of the robust-accuracy ceiling (:mod:`.ceiling`): a maximum
independent set of a graph whose edges join vertices of different labels.

Contract of :func:`solve_conflict_graph`:

- Input: ``n`` vertices ``0 .. n-1``; ``labels`` (int, shape (n,), values >= 0: the class
  index of each vertex); the edges as two int arrays ``rows``, ``cols`` of equal length, each
  unordered edge once, no self-loops, the endpoints of every edge of different labels (the
  solver does not check this); ``time_limit`` (seconds > 0, ``inf``: none) for each component
  solved by an integer program.
- Output: a dict with ``lower`` and ``upper`` (sizes of the independent set: the one found,
  and an upper bound of the maximum), ``exact`` (``lower == upper``), ``sacrificed`` (the
  sorted int64 vertices outside the set found: ``n - lower`` of them), ``n_edges``,
  ``n_components`` (connected components with at least one edge) and ``details``
  (``components``: how many were solved by each of :data:`METHODS`; ``largest_component``;
  ``bounds``: ``"exact"``, or which upper and lower bounds an inexact result uses).
- Exactness: isolated vertices are always in the set. A component whose vertices carry two
  labels is bipartite and always solved exactly, in polynomial time, through one maximum
  matching (Konig). A component with three or more labels is an integer program (maximise
  sum x subject to x_u + x_v <= 1 per edge) solved by HiGHS (``scipy.optimize.milp``); when it
  proves optimality within ``time_limit`` the component is exact (``"milp"``). Otherwise
  (``"milp_inexact"``) its lower bound is the better of HiGHS's incumbent and a min-degree
  greedy independent set, and its upper bound HiGHS's MIP dual bound (or the LP relaxation
  when HiGHS stopped before it had one, or the component's size). ``time_limit`` applies to
  each such component separately, so the total time is not bounded by it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: how each component with an edge was solved (the keys of ``details["components"]``)
METHODS = ("bipartite", "milp", "milp_inexact")


def solve_conflict_graph(n: int, labels: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                         time_limit: float) -> dict[str, Any]:
    """Maximum independent set of the graph on ``n`` vertices with edges (rows[i], cols[i])
    (each unordered edge once, endpoints of different ``labels``).

    Returns a dict: ``lower`` and ``upper`` (independent-set sizes; equal when ``exact``),
    ``exact``, ``sacrificed`` (sorted int64 vertices outside the set found), ``n_edges``,
    ``n_components`` (components with an edge) and ``details``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = dict.fromkeys(METHODS, 0)
    details: dict[str, Any] = {"components": counts, "largest_component": 0, "bounds": "exact"}
    if rows.size == 0:
        return {"lower": n, "upper": n, "exact": True, "sacrificed": np.empty(0, np.int64), "n_edges": 0,
                "n_components": 0, "details": details}
    adj = coo_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(n, n)).tocsr()
    adj = (adj + adj.T).tocsr()
    adj.data[:] = 1
    _, comp = connected_components(adj, directed=False)
    deg = np.diff(adj.indptr)
    busy = deg > 0
    comp_ids, comp_of = np.unique(comp[busy], return_inverse=True)
    verts = np.flatnonzero(busy)
    n_comp = comp_ids.size
    # labels per component: two -> bipartite, three or more -> integer program
    k = int(labels.max()) + 1
    pair = np.unique(comp_of * k + labels[verts])
    n_labels = np.bincount(pair // k, minlength=n_comp)
    sizes = np.bincount(comp_of, minlength=n_comp)
    details["largest_component"] = int(sizes.max())
    two = n_labels[comp_of] == 2
    sacrificed = [_bipartite_cover(adj, verts[two], comp_of[two], labels)] if two.any() else []
    counts["bipartite"] = int(np.count_nonzero(n_labels == 2))
    lower = upper = n - sum(s.size for s in sacrificed)
    many = np.flatnonzero(n_labels >= 3)
    upper_by: dict[str, int] = {}
    if many.size:
        order = np.argsort(comp_of, kind="stable")
        starts = np.searchsorted(comp_of[order], np.arange(n_comp + 1))
        for c in many:
            members = verts[order[starts[c]:starts[c + 1]]]
            lo, hi, lost, bound = _milp_component(adj[members][:, members].tocoo(), members, time_limit)
            counts["milp_inexact" if bound else "milp"] += 1
            if bound:
                upper_by[bound] = upper_by.get(bound, 0) + 1
            lower -= members.size - lo
            upper -= members.size - hi
            sacrificed.append(lost)
    exact = lower == upper
    if not exact:  # which upper bound, per inexact component; the lower bound is always the same
        details["bounds"] = {"upper": upper_by, "lower": "best of HiGHS incumbent and min-degree greedy"}
    lost_all = np.sort(np.concatenate(sacrificed)) if sacrificed else np.empty(0, np.int64)
    return {"lower": int(lower), "upper": int(upper), "exact": bool(exact), "sacrificed": lost_all.astype(np.int64),
            "n_edges": int(rows.size), "n_components": int(n_comp), "details": details}


def _bipartite_cover(adj: Any, verts: np.ndarray, comp_of: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A minimum vertex cover of the two-label components spanned by ``verts`` (Konig): one
    maximum matching over all of them (they are disjoint), then the vertices reachable from
    the unmatched left vertices by alternating paths decide the cover."""
    from scipy.sparse import coo_matrix, csr_matrix
    from scipy.sparse.csgraph import breadth_first_order, maximum_bipartite_matching

    lab = labels[verts]
    low = np.full(int(comp_of.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(low, comp_of, lab)
    left = lab == low[comp_of]  # in each component, the smaller label is the left side
    L, R = verts[left], verts[~left]
    pos = np.full(adj.shape[0], -1, np.int64)
    pos[L] = np.arange(L.size)
    pos[R] = np.arange(R.size)
    sub = adj[L].tocoo()  # rows: left vertices; columns: all vertices (their neighbours are right)
    B = csr_matrix((np.ones(sub.nnz, np.int8), (sub.row, pos[sub.col])), shape=(L.size, R.size))
    mate = maximum_bipartite_matching(B, perm_type="column")  # per left row: its right column or -1
    # alternating reachability from a super source to the unmatched left vertices
    nl, nr = L.size, R.size
    src = nl + nr
    matched = np.flatnonzero(mate >= 0)
    free = np.flatnonzero(mate < 0)
    Bc = B.tocoo()
    r = np.concatenate([Bc.row, nl + mate[matched], np.full(free.size, src)])
    c = np.concatenate([nl + Bc.col, matched, free])
    G = coo_matrix((np.ones(r.size, np.int8), (r, c)), shape=(src + 1, src + 1)).tocsr()
    reach = np.zeros(src + 1, dtype=bool)
    reach[breadth_first_order(G, src, directed=True, return_predecessors=False)] = True
    cover = np.concatenate([L[~reach[:nl]], R[reach[nl:src]]])
    if cover.size != matched.size:  # Konig: |minimum vertex cover| = |maximum matching|
        raise AssertionError(f"vertex cover {cover.size} != matching {matched.size}")
    return cover


def _milp_component(sub: Any, members: np.ndarray, time_limit: float) -> tuple[int, int, np.ndarray, str]:
    """Maximum independent set of one component by HiGHS: (lower, upper, sacrificed vertices,
    the upper bound's source: "" when proven optimal, else "mip_dual_bound" (HiGHS's, after
    the time limit), "lp_relaxation" (when HiGHS stopped before it had one) or "size")."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix

    m = members.size
    keep = sub.row < sub.col
    er, ec = sub.row[keep], sub.col[keep]
    ne = er.size
    A = csr_matrix((np.ones(2 * ne), (np.repeat(np.arange(ne), 2), np.stack([er, ec], 1).ravel())), shape=(ne, m))
    res = milp(-np.ones(m), constraints=LinearConstraint(A, -np.inf, 1.0), integrality=np.ones(m),
               bounds=Bounds(0, 1), options={"time_limit": time_limit, "mip_rel_gap": 0.0, "disp": False})
    take = np.zeros(m, dtype=bool)
    if res.x is not None:
        take = res.x > 0.5
        both = take[er] & take[ec]  # never trust a tolerance: repair any violated edge
        take[er[both]] = False
    if res.status == 0 and res.x is not None:
        best = int(take.sum())
        return best, best, np.sort(members[~take]), ""
    greedy = _greedy_independent(m, er, ec)
    if greedy.sum() > take.sum():
        take = greedy
    bound = getattr(res, "mip_dual_bound", None)
    how = "mip_dual_bound"
    if bound is None or not np.isfinite(bound):  # stopped before HiGHS had a bound: the LP relaxation
        lp = milp(-np.ones(m), constraints=LinearConstraint(A, -np.inf, 1.0), bounds=Bounds(0, 1))
        bound, how = (lp.fun, "lp_relaxation") if lp.status == 0 else (-float(m), "size")
    hi = min(m, int(math.floor(-bound + 1e-6)))
    lo = int(take.sum())
    return lo, max(hi, lo), np.sort(members[~take]), how if lo < hi else ""


def _greedy_independent(m: int, er: np.ndarray, ec: np.ndarray) -> np.ndarray:
    """Min-degree greedy independent set (take a vertex of least remaining degree, drop its
    neighbours, repeat); boolean mask."""
    import heapq

    nbrs: list[list[int]] = [[] for _ in range(m)]
    for a, b in zip(er.tolist(), ec.tolist(), strict=True):
        nbrs[a].append(b)
        nbrs[b].append(a)
    deg = [len(v) for v in nbrs]
    alive = [True] * m
    take = np.zeros(m, dtype=bool)
    heap = [(d, v) for v, d in enumerate(deg)]
    heapq.heapify(heap)
    while heap:
        d, v = heapq.heappop(heap)
        if not alive[v] or d != deg[v]:
            continue
        take[v] = True
        alive[v] = False
        for u in nbrs[v]:
            if alive[u]:
                alive[u] = False
                for w in nbrs[u]:
                    if alive[w]:
                        deg[w] -= 1
                        heapq.heappush(heap, (deg[w], w))
    return take


__all__ = ["METHODS", "solve_conflict_graph"]
