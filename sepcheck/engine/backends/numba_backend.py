"""The compiled CPU backend (numba) for linf and l1: the vectorised, tiled and pruned
kernels of :mod:`sepcheck.engine.kernels.simd` on a validated :class:`Problem`.

Results go to slots (see :mod:`sepcheck.engine.problem`): one kernel per norm serves both
groupings. Exact: rows are dropped only by provable lower bounds, ties go to the lowest
index, uint8 is computed in integers. Threads: ``SEPCHECK_THREADS`` (default: numba's).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator

import numba
import numpy as np

from ..problem import Problem


def search(
    problem: Problem,
    progress: Callable[[int], None] | None = None,
    seed: np.ndarray | None = None,
    ordered: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact search for linf or l1 with the compiled kernels; results in slots (m, S, k),
    raw units (``seed``, ``ordered``: see :func:`sepcheck.engine.kernels.simd.search_simd`). ``extra`` holds the pruning counters (``pairs``) and the bytes of the copies
    the search keeps (``extra_bytes``)."""
    from ..kernels.simd import search_simd

    with numba_threads():
        return search_simd(
            problem.queries,
            None if problem.by_class else problem.query_labels,
            problem.reference,
            problem.reference_labels,
            p=problem.p,
            k=problem.k,
            slot_of_row=problem.codes if problem.by_class else None,
            n_slots=problem.n_slots,
            progress=progress,
            seed=seed,
            ordered=ordered,
        )


def radius_search(
    problem: Problem,
    threshold: float,
    on_block: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray | None], None],
    max_pairs: int,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Every pair of an ``OTHER_LABEL`` problem within ``threshold`` (raw units, closed)
    with the compiled kernels (:func:`sepcheck.engine.kernels.simd.radius_simd`);
    ``on_block(qs, n, rows, cols, values)`` per batch of queries, values None where they are
    not exact (float l1: the caller recomputes them). Returns the pruning counters."""
    from ..kernels.simd import radius_simd

    exact = problem.integer or math.isinf(problem.p)

    def on_batch(qs, n, rows, cols, values):
        on_block(qs, n, rows, cols, values if exact else None)

    with numba_threads():
        return radius_simd(
            problem.queries, problem.query_labels, problem.reference, problem.reference_labels,
            p=problem.p, threshold=threshold, on_batch=on_batch, max_pairs=max_pairs,
            progress=progress,
        )


def thread_setting() -> int | None:
    """The ``SEPCHECK_THREADS`` environment variable (threads of the compiled kernels), or
    None for numba's default."""
    env = os.environ.get("SEPCHECK_THREADS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


@contextlib.contextmanager
def numba_threads() -> Iterator[None]:
    """numba's thread count set to :func:`thread_setting` (capped at the pool size)."""
    threads = thread_setting()
    prev = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(prev)
