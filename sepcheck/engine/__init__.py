"""The exact search engine: one search, two groupings.

:func:`nearest_other` (for every query, the k nearest reference rows whose label differs
from the query's; in the spirit of ``faiss.knn``) and :func:`nearest_by_class` (for every
query, the nearest reference row of every class) are thin wrappers of one pipeline:
validate -> :class:`~sepcheck.engine.problem.Problem` (with its
:class:`~sepcheck.engine.problem.Grouping`) -> choose backend and device -> backend search
-> final exact distances -> scale.

Backend contract
----------------
Every backend module exposes ``search(problem, ...) -> (distances, indices, extra)``:

* ``distances`` float64 in raw units and ``indices`` int64 of shape (m, S, k), in *slots*:
  S = 1 for ``OTHER_LABEL`` (row j counts for query i iff their labels differ); S =
  n_classes and k = 1 for ``BY_CLASS`` (row j goes to slot ``problem.codes[j]``);
* ascending inside each slot, ties to the lowest reference index; +inf / -1 where a slot
  has fewer than k rows;
* exact: an approximate backend reranks its candidates with
  :func:`sepcheck.engine.kernels.candidates.finish` (one proven bound, one fallback to an exact
  search of the same problem: :func:`sepcheck.engine.backends.fallback.exact_search`);
* ``extra``: details for ``info`` (``{"recomputed": n}`` queries recomputed exactly on an
  approximate path).

The distances a backend returns only need to order the rows correctly: the wrappers
recompute the chosen neighbours' distances with one exact routine
(:func:`~sepcheck.engine.dispatch.final_distances`), so every backend reports
bit-identical values. A new backend (a vectorised CPU kernel, a GPU kernel) plugs in by a
module with that ``search`` plus a line in :func:`~sepcheck.engine.dispatch.choose` and
:func:`~sepcheck.engine.dispatch.run_backend`.

Modules, in the order of the ``engine-layers`` import contract: ``radius`` (every pair
within a distance) and ``stream`` (the streamed search over ``sources``: every block pair
runs this pipeline); ``dispatch`` (which backend runs, its memory, running it);
``backends/`` (``numba_backend``, ``torch_backend``, ``l2`` with ``projection`` /
``projection_torch``, ``triton_backend`` with ``gpu_data``, ``faiss_backend``,
``fallback``); ``kernels/`` (``simd``, ``triton_kernels``, ``exact``, ``candidates``,
``select`` / ``select_torch``); and at the bottom ``options`` (how a search runs),
``problem`` (validation into a Problem, slots) and ``sources`` (rows of arrays, ``.npy``
and HDF5 files read in blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.devices import DEVICES, resolve_device
from ..core.validation import checked_once
from .dispatch import (
    BACKENDS,
    BY_CLASS_BACKENDS,
    choose,
    final_distances,
    plan_backend,
    run_backend,
)
from .options import SearchOptions
from .problem import (
    Grouping,
    Problem,
    make_by_class_problem,
    make_problem,
    scale_of,
)


@checked_once
def nearest_other(
    reference: Any,
    reference_labels: Any,
    queries: Any = None,
    query_labels: Any = None,
    *,
    norm: str | float = "linf",
    k: int = 1,
    backend: str = "auto",
    device: str = "auto",
    raw: bool = False,
    block_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool | Callable[[int], None] = False,
    info: dict | None = None,
    options: SearchOptions | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest reference rows whose label differs from each query's label. Exact.

    Parameters
    ----------
    reference, reference_labels
        Array-like of shape (n, ...) (images are flattened) and its n integer labels.
        uint8 or floating; uint8 stays uint8 in memory. ``reference`` (and ``queries``)
        may also be a row source or a file: a ``.npy`` path, ``"file.h5:name"``, an
        ``h5py.Dataset`` or a :class:`~sepcheck.engine.sources.RowSource` (see
        :func:`sepcheck.open_source`); the search then streams them from disk in blocks
        (:mod:`sepcheck.engine.stream`), with the same answer bit for bit.
    queries, query_labels
        Rows to search for; ``None`` (both) means the reference set against itself.
    norm
        'linf', 'l2', 'l1' or any float p >= 1.
    k
        Neighbours per query.
    backend
        'auto' (fastest exact one for the norm, dtype and device), 'numba' (compiled CPU
        kernel, linf and l1), 'torch' (blocked, CPU or CUDA, every norm), 'triton' (GPU
        kernels, linf and l1, and uint8 l2 by name) or 'faiss'.
    device
        'auto', 'cpu' or 'cuda'. Under 'auto' a CPU-only backend runs on the CPU.
    raw
        uint8 input: report distances in raw pixel units (0-255) instead of the default
        [0, 1] pixel scale (raw / 255). Ignored for floating input.
    block_size
        Rows per block (queries and references), overriding the memory budget.
    memory_budget
        Extra bytes the search may use, blocks, converted copies and candidate lists
        included: an integer or a size such as '512MiB' or '2GB' (default 512 MiB, at
        least 16 MiB). Not counted: the validated input itself (a converted copy when the
        input is not uint8/float32/float64 or not C-contiguous) and the returned arrays.
        A streamed search (a source or file among the inputs) counts its data blocks too:
        a quarter of the budget for a query block, an eighth for each of two reference
        blocks (one searched, one being read), half for the search of each block pair.
        The compiled numba kernels keep a copy of the reference for linf: when it does not
        fit an explicit budget, 'auto' runs torch and 'numba' is a one-line error.
    progress
        True for a progress bar on stderr, or a callable receiving query counts done.
    info
        Optional dict that receives details: backend, device, queries recomputed exactly.
    options
        A :class:`~sepcheck.engine.options.SearchOptions` validated already (a caller that
        searches several times builds it once), instead of backend, device, raw,
        block_size, memory_budget and progress.

    Returns
    -------
    distances : float64 array (n_queries, k)
        Ascending per row; +inf where fewer than k rows of another label exist.
    indices : int64 array (n_queries, k)
        Row indices into ``reference``; ties go to the lowest index; -1 with +inf.
    """
    opts = _options(options, backend, device, raw, block_size, memory_budget, progress)
    if _streams(reference, queries):
        from .stream import stream_search

        dist, idx, _ = stream_search(
            reference, reference_labels, queries, query_labels, norm=norm, k=k, options=opts, info=info,
        )
        return dist[:, 0, :], idx[:, 0, :]
    problem = make_problem(reference, reference_labels, queries, query_labels, norm=norm, k=k)
    dist, idx = _search(problem, opts, info)
    return dist[:, 0, :], idx[:, 0, :]


@checked_once
def nearest_by_class(
    reference: Any,
    reference_labels: Any,
    queries: Any,
    *,
    norm: str | float = "linf",
    backend: str = "auto",
    device: str = "auto",
    raw: bool = False,
    block_size: int | None = None,
    memory_budget: int | None = None,
    progress: bool | Callable[[int], None] = False,
    info: dict | None = None,
    options: SearchOptions | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query and per class, the distance to and index of the nearest reference row of
    that class. Exact, with the conventions of :func:`nearest_other`.

    What the 1/r-Lipschitz nearest-neighbour classifier needs. A reference set with a
    single class is allowed (the answer is then the plain nearest neighbour);
    ``nearest_other`` needs two classes, this function does not.

    Parameters
    ----------
    reference, reference_labels
        Array-like of shape (n, ...) (images are flattened) and its n integer labels.
        uint8 or floating; a single class is allowed. Sources and files are streamed, as
        for :func:`nearest_other`.
    queries
        Rows to search for, same features (and uint8-ness) as ``reference``; a source or
        file is streamed.
    norm
        'linf', 'l2', 'l1' or any float p >= 1.
    backend
        'auto', 'numba' (CPU, linf and l1), 'torch' (CPU or CUDA, every norm) or
        'triton' (GPU, linf and l1, and uint8 l2 by name).
    device
        'auto', 'cpu' or 'cuda'. Under 'auto' a CPU-only backend runs on the CPU.
    raw
        uint8 input: distances in raw 0-255 units instead of the [0, 1] pixel scale.
    block_size
        Rows per block (queries and references) for the torch backend.
    memory_budget
        Extra bytes the search may use, as for :func:`nearest_other` (data blocks
        included when the search streams).
    progress
        True for a progress bar on stderr, or a callable receiving query counts done.
    info
        Optional dict that receives details: backend, device, queries recomputed exactly
        on the l2 GEMM path.
    options
        Validated :class:`~sepcheck.engine.options.SearchOptions` instead of the six
        keywords above, as for :func:`nearest_other`.

    Returns
    -------
    distances : float64 array (n_queries, n_classes)
        ``distances[q, i]`` = distance from query q to the nearest row of ``classes[i]``.
    indices : int64 array (n_queries, n_classes)
        Row index into ``reference`` of that nearest row; ties go to the lowest index.
    classes : int64 array (n_classes,)
        The sorted unique reference labels (the column order).
    """
    opts = _options(options, backend, device, raw, block_size, memory_budget, progress)
    if _streams(reference, queries):
        from .stream import stream_search

        dist, idx, classes = stream_search(
            reference, reference_labels, queries, None, grouping=Grouping.BY_CLASS, norm=norm,
            options=opts, info=info,
        )
        return dist[:, :, 0], idx[:, :, 0], classes
    problem = make_by_class_problem(reference, reference_labels, queries, norm=norm)
    dist, idx = _search(problem, opts, info)
    return dist[:, :, 0], idx[:, :, 0], problem.classes


def _streams(reference: Any, queries: Any) -> bool:
    """True when the search streams: reference or queries is a row source or a file
    (:func:`sepcheck.engine.sources.is_source`)."""
    from .sources import is_source

    return is_source(reference) or (queries is not None and is_source(queries))


def _options(
    options: SearchOptions | None,
    backend: str,
    device: str,
    raw: bool,
    block_size: int | None,
    memory_budget: Any,
    progress: bool | Callable[[int], None],
) -> SearchOptions:
    """:meth:`SearchOptions.resolve` of the wrappers' keywords."""
    return SearchOptions.resolve(
        options, backend=backend, device=device, raw=raw, block_size=block_size,
        memory_budget=memory_budget, progress=progress,
    )


def _search(problem: Problem, opts: SearchOptions, info: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline of both wrappers: slots (m, S, k) in reported units."""
    budget = opts.budget
    name, dev, budget = plan_backend(problem, opts.backend, opts.device, budget, opts.memory_budget is not None)
    dist, idx, extra = run_backend(problem, name, dev, budget, opts.block_size, opts.progress)
    dist = final_distances(problem, dist, idx) / scale_of(problem, opts.raw)
    if info is not None:
        info.update({"backend": name, "device": dev, **extra})
    return dist, idx


def __getattr__(name: str):
    """The radius search is loaded on first use."""
    if name in ("neighbors_within", "RadiusNeighbors"):
        from . import radius

        return getattr(radius, name)
    raise AttributeError(f"module 'sepcheck.engine' has no attribute {name!r}")


__all__ = [
    "nearest_other",
    "neighbors_within",
    "RadiusNeighbors",
    "nearest_by_class",
    "choose",
    "SearchOptions",
    "BACKENDS",
    "BY_CLASS_BACKENDS",
    "DEVICES",
    "Grouping",
    "Problem",
    "make_problem",
    "make_by_class_problem",
    "resolve_device",
]
