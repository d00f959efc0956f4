"""The streamed search: reference and queries read block by block from a :class:`RowSource`.

For each query block (rows ``a:b`` read once), the reference is read in blocks, sequentially
in file order (a reader thread fetches the next block while the current one is searched);
every (reference block, query block) pair runs the in-memory pipeline of
:mod:`sepcheck.engine` (same backends, same :class:`~sepcheck.engine.problem.Problem`), its
neighbours get exact distances (:func:`~sepcheck.engine.dispatch.final_distances`) and the block's row
offset, and they are merged into the query block's running top-k per slot by
:func:`~sepcheck.engine.kernels.select.sort_candidates` (lexicographic on (distance, index): ties
to the lowest index). The answer is the in-memory run's, bit for bit.

Memory (``memory_budget``, default 512 MiB): a quarter for the query block, an eighth for
each of two reference blocks (the one searched and the one being read), half for the inner
search of a block pair. The labels and the returned arrays are not counted.

The numba linf kernels order the features of each block once, as it is read (one order,
from the first reference block), not once per block pair. For uint8 data the numba kernels of each block start from the k-th distances already found
(``seed``: they search only for strictly closer rows, which is what the merge keeps since
earlier blocks hold the lower indices), so later blocks prune like one in-memory search.

Floating data is checked (NaN/inf) and scanned for its largest magnitude once before the
search (see :func:`~sepcheck.engine.problem.range_scale`); uint8 needs no pass.

Driving the query blocks yourself (a sharded run's shards, resume, ranks): ``plan = plan_stream(...)``, then
``plan.query_blocks()`` gives the ``(a, b)`` query rows of each query block and
``plan.search_query_block(a, b)`` its ``(distances, indices)`` of shape (b - a, S, k) in reported
units; any ``(a, b)`` inside the queries works, the answer per query never depends on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.norms import parse_norm
from ..core.validation import (
    abs_max,
    as_features,
    as_labels,
    check_positive_int,
    check_same_dim,
    check_two_classes,
)
from .dispatch import final_distances, plan_backend, run_backend
from .kernels.select import sort_candidates
from .options import SearchOptions
from .problem import (
    Grouping,
    Problem,
    apply_scale,
    check_query_pair,
    common_dtype,
    effective_p,
    range_scale,
    require_queries,
    scale_of,
)
from .sources import RowSource, open_source

#: shares of the memory budget: query block, each of the two reference blocks
QUERY_SHARE = 4
BLOCK_SHARE = 8


@dataclass
class StreamPlan:
    """A validated streamed search: sources, labels, norm, block sizes and backend.

    Attributes
    ----------
    reference, queries : RowSource
        The rows searched and the rows searched for (the same source in self mode).
    query_rows, block_rows : int
        Rows per query block and per reference block.
    backend, device : str
        What runs every block pair; ``inner_budget`` its memory budget (bytes; None:
        triton sizes itself from free GPU memory).
    """

    reference: RowSource
    reference_labels: np.ndarray
    queries: RowSource
    query_labels: np.ndarray
    p: float
    k: int
    grouping: Grouping
    codes: np.ndarray | None
    classes: np.ndarray | None
    dtype: np.dtype
    scale: float
    divisor: float
    query_rows: int
    block_rows: int
    backend: str
    device: str
    inner_budget: int | None
    block_size: int | None
    #: numba linf: the feature order of the kernels, applied once to every block read
    feature_perm: np.ndarray | None = None

    @property
    def n_slots(self) -> int:
        return int(self.classes.size) if self.grouping is Grouping.BY_CLASS else 1

    def query_blocks(self) -> list[tuple[int, int]]:
        """``(a, b)`` query rows of the blocks covering every query, aligned to the queries'
        chunk rows."""
        return self.queries.block_bounds(self.query_rows)

    def info(self) -> dict[str, Any]:
        """Details for ``info``: backend, device, streamed, block sizes, inner budget."""
        return {"backend": self.backend, "device": self.device, "streamed": True,
                "query_rows": self.query_rows, "block_rows": self.block_rows,
                "inner_budget": self.inner_budget}

    def search_query_block(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots (b - a, S, k) of queries ``a:b``: distances in reported units, indices into
        the reference (ties to the lowest index; +inf / -1 where a slot has fewer rows)."""

        Q = self._convert(self.queries.read(a, b), "queries")
        ql = self.query_labels[a:b]
        shape = (b - a, self.n_slots, self.k)
        best_d, best_i = np.full(shape, np.inf), np.full(shape, -1, dtype=np.int64)
        for ra, rb, R in self._reference_blocks():
            sub = self._problem(R, ra, rb, Q, ql)
            seed = best_d[:, :, -1] if self.dtype == np.uint8 else None  # exact: prune from the start
            d, i, _ = run_backend(sub, self.backend, self.device, self.inner_budget, self.block_size, False, seed,
                                  ordered=self.feature_perm is not None)
            d = final_distances(sub, d, i)
            i = np.where(i >= 0, i + ra, -1)
            best_d, best_i = sort_candidates(
                np.concatenate([best_d, d], axis=2), np.concatenate([best_i, i], axis=2), self.k
            )
        return best_d / self.divisor, best_i

    def _problem(self, R: np.ndarray, ra: int, rb: int, Q: np.ndarray, ql: np.ndarray) -> Problem:
        by_class = self.grouping is Grouping.BY_CLASS
        return Problem(
            R, self.reference_labels[ra:rb], Q, ql, self.p, self.k, False, self.grouping,
            self.codes[ra:rb] if by_class else None, self.classes, self.scale,
        )

    def _convert(self, block: np.ndarray, name: str) -> np.ndarray:
        """A block as the search uses it: validated like an in-memory array, in the common
        dtype, times the range scale."""
        out = as_features(block, name)
        if out.dtype != self.dtype:
            out = out.astype(self.dtype)
        out = apply_scale(out, self.scale)
        if self.feature_perm is not None:
            from .kernels.simd import permuted_columns

            return permuted_columns(out, self.feature_perm)
        return np.ascontiguousarray(out)

    def _reference_blocks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """Reference blocks in file order, the next one read (and converted) in a thread
        while the current one is searched."""
        bounds = self.reference.block_bounds(self.block_rows)

        def load(a: int, b: int) -> np.ndarray:
            return self._convert(self.reference.read(a, b), "reference")

        if len(bounds) == 1:
            yield bounds[0][0], bounds[0][1], load(*bounds[0])
            return
        with ThreadPoolExecutor(1, thread_name_prefix="sepcheck-read") as pool:
            nxt = pool.submit(load, *bounds[0])
            for j, (a, b) in enumerate(bounds):
                block = nxt.result()
                if j + 1 < len(bounds):
                    nxt = pool.submit(load, *bounds[j + 1])
                yield a, b, block
                del block


def plan_stream(
    reference: Any,
    reference_labels: Any,
    queries: Any = None,
    query_labels: Any = None,
    *,
    grouping: Grouping = Grouping.OTHER_LABEL,
    norm: str | float = "linf",
    k: int = 1,
    options: SearchOptions | None = None,
    query_rows: int | None = None,
    block_rows: int | None = None,
) -> StreamPlan:
    """Validate a streamed search and size its blocks (see the module docstring).

    ``options``: how it runs (validated :class:`~sepcheck.engine.options.SearchOptions`;
    default: all defaults); its ``progress`` is the caller's (:func:`stream_search`).

    ``reference`` and ``queries`` are anything :func:`~sepcheck.engine.sources.open_source`
    accepts; ``queries=None`` searches the reference against itself (OTHER_LABEL only).
    ``query_rows`` / ``block_rows`` force the rows per query block / reference block
    (otherwise from the budget; both are rounded to whole HDF5 chunks).
    """

    p = parse_norm(norm)
    k = check_positive_int(k, "k")
    ref = open_source(reference, "reference")
    rl = as_labels(reference_labels, len(ref), "reference_labels", "reference")
    by_class = grouping is Grouping.BY_CLASS
    if by_class:
        require_queries(queries)
        qry = open_source(queries, "queries")
        ql = np.full(len(qry), -1, dtype=np.int64)
        classes, codes = np.unique(rl, return_inverse=True)
        classes, codes = classes.astype(np.int64), codes.reshape(-1).astype(np.int64)
        k = 1
    else:
        check_query_pair(queries, query_labels)
        check_two_classes(rl, "reference_labels")
        qry = ref if queries is None else open_source(queries, "queries")
        ql = rl if queries is None else as_labels(query_labels, len(qry), "query_labels", "queries")
        classes = codes = None
    check_same_dim(ref, qry, "reference", "queries")
    d = ref.shape[1]
    rd = as_features(ref.read(0, 1), "reference").dtype
    qd = as_features(qry.read(0, 1), "queries").dtype
    dtype = common_dtype(np.empty((0, d), rd), np.empty((0, d), qd))[0].dtype
    p = effective_p(p, d)
    scale = 1.0
    if dtype != np.uint8:
        top = _largest(ref, "reference", dtype)
        if qry is not ref:
            top = max(top, _largest(qry, "queries", dtype))
        scale = range_scale(top, p, d)

    opts = options if options is not None else SearchOptions()
    block_size = opts.block_size
    budget = opts.budget
    q_row, r_row = _row_bytes(qry, dtype, scale), _row_bytes(ref, dtype, scale)
    q_rows = check_positive_int(query_rows, "query_rows") if query_rows is not None else max(
        1, budget // QUERY_SHARE // q_row)
    r_rows = check_positive_int(block_rows, "block_rows") if block_rows is not None else max(
        1, budget // BLOCK_SHARE // r_row)
    q_rows, r_rows = whole_chunks(q_rows, qry), whole_chunks(r_rows, ref)
    inner = budget - q_rows * q_row - 2 * r_rows * r_row
    inner = max(inner, budget // 2)
    probe = Problem(
        np.empty((r_rows, d), dtype), rl[:r_rows], np.empty((q_rows, d), dtype), ql[:q_rows], p, k, False,
        grouping, codes[:r_rows] if by_class else None, classes, scale,
    )
    name, dev, inner_budget = plan_backend(probe, opts.backend, opts.device, inner, opts.memory_budget is not None)
    plan = StreamPlan(
        ref, rl, qry, ql, p, k, grouping, codes, classes, dtype, scale, scale_of(probe, opts.raw),
        q_rows, r_rows, name, dev, inner_budget, block_size,
    )
    if name == "numba" and math.isinf(p):  # one feature order for every block (from the first)
        from .kernels.simd import feature_order

        plan.feature_perm = feature_order(plan._convert(ref.read(0, r_rows), "reference"))
    return plan


def _row_bytes(src: RowSource, dtype: np.dtype, scale: float) -> int:
    """Bytes per row of a block as read, plus its converted copy when there is one."""
    if src.dtype == dtype and scale == 1.0:
        return src.row_bytes
    return src.row_bytes + src.shape[1] * (dtype.itemsize if scale == 1.0 else 8)


def whole_chunks(rows: int, src: RowSource) -> int:
    """``rows`` rounded down to whole chunks of ``src`` (at least one), at most all its rows."""
    c = max(1, src.chunk_rows)
    return min(len(src), max(c, rows // c * c))


def _largest(src: RowSource, name: str, dtype: np.dtype) -> float:
    """The largest |feature| of a floating source (every block validated on the way)."""
    rows = max(1, (64 * 2**20) // max(1, src.row_bytes + src.shape[1] * 8))
    top = 0.0
    for _, _, block in src.iter_blocks(rows):
        top = max(top, abs_max(as_features(block, name).astype(dtype, copy=False)))
    return top


def stream_search(
    reference: Any,
    reference_labels: Any,
    queries: Any = None,
    query_labels: Any = None,
    *,
    options: SearchOptions | None = None,
    info: dict | None = None,
    **problem: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every query block of :func:`plan_stream`'s plan: slots (m, S, k) of distances (reported
    units) and indices, and the classes (BY_CLASS; None otherwise). ``problem`` (grouping,
    norm, k) and ``options`` go to :func:`plan_stream`; progress is ``options.progress``."""
    from ..core.progress import progress_callback

    opts = options if options is not None else SearchOptions()
    progress = opts.progress
    plan = plan_stream(reference, reference_labels, queries, query_labels, options=opts, **problem)
    m = len(plan.queries)
    shape = (m, plan.n_slots, plan.k)
    dist, idx = np.empty(shape), np.empty(shape, dtype=np.int64)
    label = "nearest by class" if plan.grouping is Grouping.BY_CLASS else "nearest other"
    with progress_callback(progress, m, f"{label} ({plan.backend}, streamed)") as tick:
        for a, b in plan.query_blocks():
            dist[a:b], idx[a:b] = plan.search_query_block(a, b)
            if tick is not None:
                tick(b - a)
    if info is not None:
        info.update(plan.info())
    return dist, idx, plan.classes


__all__ = ["StreamPlan", "plan_stream", "stream_search"]
