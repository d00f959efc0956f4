"""The robust-accuracy ceiling of a labelled sample: the best robust accuracy any deterministic
classifier can reach on it at radius eps.

Two points with different labels at distance <= 2 eps cannot both be classified correctly and
robustly (their closed eps-balls meet); a set of points without such a pair can (give each ball
its label). So the ceiling is the maximum independent set of the *conflict graph* (vertices:
points; edges: different-label pairs at distance <= 2 eps) divided by n (Bhagoji et al. 2019,
Pydi & Jog 2020).

The graph is solved per connected component: isolated points are free; a component whose
points carry two labels is bipartite and exact through a maximum matching (Konig: maximum
independent set = size - matching; a minimum vertex cover, the sacrificed points, is recovered
from the matching); a component with three or more labels is an integer program (maximise
sum x subject to x_u + x_v <= 1 per edge) solved exactly by HiGHS (``scipy.optimize.milp``)
within ``time_limit`` seconds, after which the ceiling is bounded by HiGHS's MIP dual bound
(above) and the better of HiGHS's incumbent and a min-degree greedy independent set (below).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..core.errors import SepcheckError
from ..core.fileio import atomic_write, json_text, read_json_object
from ..core.hashing import array_digest
from ..core.norms import norm_name, parse_norm
from ..core.validation import as_features, as_labels, check_two_classes
from ..engine.problem import units_of

FORMAT = "sepcheck.ceiling/1"
#: how each component with an edge was solved (the keys of ``details[i]["components"]``)
METHODS = ("bipartite", "milp", "milp_inexact")


@dataclass
class CeilingResult:
    """Result of :func:`robust_ceiling`: one value per eps (the order given).

    Attributes
    ----------
    eps : ndarray, shape (E,)
        Attack radii on the scale of :func:`~sepcheck.separation` (uint8 data: pixels / 255
        unless ``raw``).
    accuracy : ndarray, shape (E,)
        Maximum robust accuracy of any deterministic classifier on the sample, where ``exact``;
        elsewhere a lower bound (greedy or HiGHS incumbent).
    upper : ndarray, shape (E,)
        Upper bound of the ceiling (equal to ``accuracy`` where exact; HiGHS's MIP dual bound
        for the components that hit the time limit).
    exact : ndarray of bool, shape (E,)
    n_edges : ndarray of int64, shape (E,)
        Conflict edges (unordered different-label pairs at distance <= 2 eps).
    n_components : ndarray of int64, shape (E,)
        Connected components with at least one edge.
    n_points : int
    class_share : float
        Fraction of the largest class: the ceiling once every pair conflicts.
    sacrificed : list of ndarray of int64
        Per eps, the sorted indices of the points one optimal (or, where inexact, the
        best found) solution gives up.
    details : list of dict
        Per eps: components per method, points in the largest component, seconds.
    """

    eps: np.ndarray
    accuracy: np.ndarray
    upper: np.ndarray
    exact: np.ndarray
    n_edges: np.ndarray
    n_components: np.ndarray
    n_points: int
    class_share: float
    sacrificed: list[np.ndarray]
    details: list[dict[str, Any]]
    norm: str = "linf"
    units: str = "pixel"
    dataset: str = ""
    content_hash: str = ""
    time_limit: float = 10.0
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, sacrificed: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict (``sacrificed=False`` leaves the index lists out)."""
        out: dict[str, Any] = {
            "format": FORMAT, "dataset": self.dataset, "norm": self.norm, "units": self.units,
            "n_points": int(self.n_points), "class_share": float(self.class_share),
            "time_limit": float(self.time_limit), "content_hash": self.content_hash, "version": self.version,
            "eps": self.eps.tolist(), "accuracy": self.accuracy.tolist(), "upper": self.upper.tolist(),
            "exact": [bool(v) for v in self.exact], "n_edges": self.n_edges.tolist(),
            "n_components": self.n_components.tolist(), "details": self.details, "extra": self.extra,
        }
        if sacrificed:
            out["sacrificed"] = [s.tolist() for s in self.sacrificed]
        return out

    def to_json(self, sacrificed: bool = True) -> str:
        return json_text(self.to_dict(sacrificed=sacrificed))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CeilingResult:
        """Inverse of :meth:`to_dict` (with the sacrificed lists)."""
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}")
            return cls(
                eps=np.asarray(d["eps"], dtype=np.float64), accuracy=np.asarray(d["accuracy"], dtype=np.float64),
                upper=np.asarray(d["upper"], dtype=np.float64), exact=np.asarray(d["exact"], dtype=bool),
                n_edges=np.asarray(d["n_edges"], dtype=np.int64),
                n_components=np.asarray(d["n_components"], dtype=np.int64),
                n_points=int(d["n_points"]), class_share=float(d["class_share"]),
                sacrificed=[np.asarray(s, dtype=np.int64) for s in d["sacrificed"]],
                details=list(d["details"]), norm=str(d["norm"]), units=str(d["units"]),
                dataset=str(d.get("dataset", "")), content_hash=str(d.get("content_hash", "")),
                time_limit=float(d.get("time_limit", math.nan)), version=str(d.get("version", "")),
                extra=dict(d.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SepcheckError(f"not a sepcheck ceiling result ({exc})") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON (with the sacrificed points), atomically."""
        text = self.to_json()
        return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> CeilingResult:
        """Read a file written by :meth:`save`."""
        return cls.from_dict(read_json_object(path, "ceiling result"))

    def at(self, eps: float) -> int:
        """Index of ``eps`` in :attr:`eps` (exact match), or a SepcheckError."""
        hit = np.flatnonzero(self.eps == float(eps))
        if hit.size == 0:
            raise SepcheckError(f"eps={eps!r} is not in this result's grid {self.eps.tolist()}")
        return int(hit[0])

    def plot(self, ax: Any = None, *, typical_eps: float | None = None, runs: Any = None, **kwargs: Any) -> Any:
        """The ceiling curve (see :func:`sepcheck.analysis.plots.plot_ceiling`)."""
        from .plots import plot_ceiling

        return plot_ceiling(self, ax=ax, typical_eps=typical_eps, runs=runs, **kwargs)


def as_eps_grid(eps: Any, name: str = "eps") -> np.ndarray:
    """A float or 1-D array of radii (finite, >= 0, at least one) as float64, order kept;
    ``name`` names them in the error about a radius that is not finite or negative (the CLI:
    ``--eps``)."""
    try:
        arr = np.asarray(eps, dtype=np.float64)
    except (TypeError, ValueError):
        raise SepcheckError(f"eps={eps!r} is invalid: give a radius >= 0 or a 1-D array of them") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.size == 0:
        raise SepcheckError(f"eps has shape {arr.shape}: give a radius >= 0 or a non-empty 1-D array of them")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise SepcheckError(f"{name} {float(arr[bad][0])!r} is invalid: every radius must be finite and >= 0")
    return arr


def check_time_limit(time_limit: Any) -> float:
    """Seconds per integer program: a number > 0 (inf: no limit)."""
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float, np.integer, np.floating)) \
            or not time_limit > 0:
        raise SepcheckError(f"time_limit={time_limit!r} is invalid: give the seconds per component, > 0")
    return float(time_limit)


def ceiling_inputs(X: Any, y: Any, eps: Any, time_limit: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Validated (features (n, d), labels (n,), eps grid (E,), time limit) of a ceiling: at
    least two classes, radii finite and >= 0, a time limit > 0."""
    Xf = as_features(X, "X")
    yv = as_labels(y, Xf.shape[0], "y", "X")
    grid = as_eps_grid(eps)
    limit = check_time_limit(time_limit)
    check_two_classes(yv, "y", what="the robust-accuracy ceiling")
    return Xf, yv, grid, limit


def robust_ceiling(
    X: Any,
    y: Any,
    eps: Any,
    *,
    norm: str | float = "linf",
    raw: bool = False,
    time_limit: float = 10.0,
    backend: str = "auto",
    device: str = "auto",
    memory_budget: Any = None,
    progress: bool = False,
    dataset: str = "",
    nearest_distances: Any = None,
    content_hash: str | None = None,
) -> CeilingResult:
    """Maximum robust accuracy of any deterministic classifier on the sample ``(X, y)`` at each
    radius in ``eps`` (module docstring).

    Parameters
    ----------
    X : array, shape (n, ...)
    y : array of int, shape (n,)
    eps : float or array, shape (E,)
        Radii >= 0 on the scale of :func:`~sepcheck.separation` (uint8: /255 unless ``raw``).
    norm : 'linf', 'l2', 'l1' or p >= 1
    time_limit : float
        Seconds HiGHS may spend on one component with three or more labels.
    backend, device, memory_budget, progress
        For the exact searches (:func:`~sepcheck.nearest_other`, then one
        :func:`~sepcheck.engine.radius.neighbors_within` at 2 max(eps); each eps then
        filters its pairs).
    nearest_distances : array, shape (n,), optional
        Each point's distance to the nearest differently labelled point
        (:attr:`SeparationResult.distances <sepcheck.SeparationResult>` of the same data,
        norm and units), to skip that search. Only the points within 2 max(eps) of another
        label can conflict: the radius search runs on them alone.
    content_hash : str, optional
        :func:`sepcheck.core.hashing.array_digest` of ``(X, y)`` when the caller has it already
        (:func:`sepcheck.runs.cache.cached_ceiling`).

    Returns
    -------
    CeilingResult

    Notes
    -----
    Radii with 2 eps beyond a bound of the diameter (the norm of the per-feature ranges)
    make every different-label pair conflict: their ceiling is the largest class share,
    without a search.
    """
    from ..engine import nearest_other
    from ..engine.radius import neighbors_within

    p = parse_norm(norm)
    Xf, yv, grid, limit = ceiling_inputs(X, y, eps, time_limit)
    n = int(Xf.shape[0])
    _, yidx = np.unique(yv, return_inverse=True)
    yidx = yidx.astype(np.int64)
    sizes = np.bincount(yidx)
    share = float(sizes.max() / n)
    whole = 2.0 * grid >= _diameter_bound(Xf, p, raw)  # complete multipartite graphs
    rmax = float(2.0 * grid[~whole].max()) if (~whole).any() else None
    engine = {"backend": backend, "device": device, "memory_budget": memory_budget, "progress": progress}
    t0 = time.perf_counter()
    nb, close, nearest_s, radius_s = None, np.empty(0, np.int64), 0.0, 0.0
    if rmax is not None:
        if nearest_distances is None:
            d1 = nearest_other(Xf, yv, norm=p, k=1, raw=raw, **engine)[0][:, 0]
        else:
            d1 = np.asarray(nearest_distances, dtype=np.float64).reshape(-1)
            if d1.shape != (n,) or np.isnan(d1).any() or (d1 < 0).any():
                raise SepcheckError(f"nearest_distances has shape {d1.shape} or holds NaN or negative values: "
                                    f"give the {n} distances of SeparationResult.distances")
        close = np.flatnonzero(d1 <= rmax)  # only they can conflict at any eps of the grid
        t1 = time.perf_counter()
        if close.size >= 2 and np.unique(yv[close]).size >= 2:
            nb = neighbors_within(Xf[close], yv[close], rmax, norm=p, other_label=True, raw=raw, **engine)
        nearest_s, radius_s = t1 - t0, time.perf_counter() - t1
    acc, up, ex, ne, nc, sac, det = [], [], [], [], [], [], []
    cross = (n * n - int((sizes.astype(np.int64) ** 2).sum())) // 2
    for e, full in zip(grid, whole, strict=True):
        t1 = time.perf_counter()
        if full:
            big = int(np.argmax(sizes))
            g = {"lower": int(sizes[big]), "upper": int(sizes[big]), "exact": True, "n_edges": cross,
                 "n_components": 1, "sacrificed": np.flatnonzero(yidx != big).astype(np.int64),
                 "details": {"components": dict.fromkeys(METHODS, 0), "largest_component": n, "bounds": "exact",
                             "shortcut": "2 eps beyond the diameter: every different-label pair conflicts"}}
        elif nb is None:
            g = solve_conflict_graph(n, yidx, np.empty(0, np.int64), np.empty(0, np.int64), limit)
        else:
            r, c, _ = nb.within(2.0 * float(e)).pairs()
            keep = r < c
            g = solve_conflict_graph(n, yidx, close[r[keep]], close[c[keep]], limit)
        g["details"]["seconds"] = time.perf_counter() - t1
        acc.append(g["lower"] / n)
        up.append(g["upper"] / n)
        ex.append(g["exact"])
        ne.append(g["n_edges"])
        nc.append(g["n_components"])
        sac.append(g["sacrificed"])
        det.append(g["details"])
    return CeilingResult(
        eps=grid, accuracy=np.array(acc), upper=np.array(up), exact=np.array(ex, dtype=bool),
        n_edges=np.array(ne, dtype=np.int64), n_components=np.array(nc, dtype=np.int64), n_points=n,
        class_share=share, sacrificed=sac, details=det, norm=norm_name(p), units=units_of(Xf, raw),
        dataset=dataset, content_hash=content_hash or array_digest(Xf, yv), time_limit=limit,
        extra={"nearest_seconds": nearest_s, "radius_seconds": radius_s, "search_radius": rmax,
               "searched_points": int(close.size), "pairs": 0 if nb is None else int(nb.nnz)},
    )


def _diameter_bound(X: np.ndarray, p: float, raw: bool) -> float:
    """An upper bound of every distance in ``X`` (reported units), with a margin for the
    rounding of computed distances (none for uint8 linf, whose distances are exact)."""
    rng = X.max(axis=0).astype(np.float64) - X.min(axis=0).astype(np.float64)
    scale = 255.0 if X.dtype == np.uint8 and not raw else 1.0
    if math.isinf(p):
        bound = float(rng.max()) / scale
        return bound if X.dtype == np.uint8 else bound * (1 + 1e-9)
    return float(np.sum(rng**p) ** (1.0 / p)) / scale * (1 + 1e-9)


# ----- the graph -------------------------------------------------------------------------
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


__all__ = ["CeilingResult", "robust_ceiling", "solve_conflict_graph", "as_eps_grid", "check_time_limit", "METHODS"]
