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
  :func:`sepcheck.engine.candidates.finish` (one proven bound, one fallback to an exact
  search of the same problem: :func:`sepcheck.engine.fallback.exact_search`);
* ``extra``: details for ``info`` (``{"recomputed": n}`` queries recomputed exactly on an
  approximate path).

The distances a backend returns only need to order the rows correctly: the wrappers
recompute the chosen neighbours' distances with one exact routine
(:func:`final_distances`), so every backend reports bit-identical values. A new backend
(a vectorised CPU kernel, a GPU kernel) plugs in by a module with that ``search`` plus a
line in :func:`choose` and :func:`run_backend`. Modules: ``problem`` (validation, slots),
``numba_backend`` (compiled linf/l1 kernels), ``torch_backend`` (one tiling driver, exact
tiles and the l2 GEMM candidates, precision probe), ``faiss_backend`` (OTHER_LABEL only),
``candidates`` (GEMM error bound, prune, finish), ``select`` (top-k merges), ``exact``
(exact pair distances), ``fallback`` (exact recomputation), ``sources`` (rows of arrays,
``.npy`` and HDF5 files read in blocks) and ``stream`` (the streamed search over sources:
every block pair runs this pipeline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from ..core.devices import DEVICES, resolve_device
from ..core.errors import SepcheckError
from .problem import (
    Grouping,
    Problem,
    is_linf_or_l1,
    make_by_class_problem,
    make_problem,
    scale_of,
    search_limits,
)

BackendName = Literal["auto", "numba", "torch", "faiss", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "numba", "torch", "faiss", "triton")
#: backends that nearest_by_class runs (faiss has no per-class search here)
BY_CLASS_BACKENDS: tuple[str, ...] = ("auto", "numba", "torch", "triton")
#: backends that run on the CPU only (faiss too when it has no GPU support)
CPU_ONLY_BACKENDS = ("numba",)


def _cpu_only(backend: str) -> bool:
    if backend in CPU_ONLY_BACKENDS:
        return True
    if backend == "faiss":
        from .faiss_backend import has_gpu

        return not has_gpu()
    return False


def _triton_usable() -> bool:
    """True when triton imports (CUDA builds of torch ship it; the ``gpu`` extra otherwise)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def choose(problem: Problem, backend: str, device: str) -> tuple[str, str]:
    """(backend that runs, resolved device) for a problem.

    'auto' picks the fastest exact backend (see README benchmark): on the CPU the compiled
    kernel for linf and l1, the torch GEMM path for l2, torch for other p; on CUDA the
    Triton kernels for linf and l1 (torch when triton is missing) and torch otherwise.
    'triton' runs on CUDA, or on the CPU only under ``TRITON_INTERPRET=1`` (tests).
    A CPU-only backend (numba; faiss without GPU support) implies the CPU under
    ``device='auto'``; asked for explicitly on CUDA it is a one-line error naming the fix.
    """
    b = str(backend).lower()
    allowed = BY_CLASS_BACKENDS if problem.by_class else BACKENDS
    if b not in allowed:
        if b in BACKENDS:
            raise SepcheckError(
                f"backend {backend!r} does not search per class: use one of {', '.join(allowed)}"
            )
        raise SepcheckError(f"unknown backend {backend!r}: use one of {', '.join(allowed)}")
    if b == "numba" and not is_linf_or_l1(problem.p):
        raise SepcheckError(
            "backend 'numba' computes linf and l1 only: use backend='torch' or 'faiss' for "
            f"p={problem.p:g}"
        )
    if b == "triton" and not (is_linf_or_l1(problem.p) or (problem.p == 2 and problem.integer)):
        raise SepcheckError(
            "backend 'triton' computes linf, l1 and uint8 l2 only: use backend='torch' for "
            f"p={problem.p:g}" + (" on float rows" if problem.p == 2 else "")
        )
    auto_device = str(device).strip().lower() == "auto"
    dev = "cpu" if (auto_device and b != "auto" and _cpu_only(b)) else resolve_device(device)
    if b == "auto":
        if is_linf_or_l1(problem.p):
            if dev == "cpu":
                return "numba", dev
            if _triton_usable():
                return "triton", dev
        return "torch", dev
    if dev != "cpu" and _cpu_only(b):
        if b == "numba":
            raise SepcheckError(
                "backend 'numba' runs on the CPU only: use device='cpu' or backend='torch'"
            )
        raise SepcheckError(
            "backend 'faiss' on CUDA needs faiss with GPU support: install faiss-gpu-cu12, "
            "or use device='cpu' or backend='torch'"
        )
    return b, dev


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
        a quarter of the budget for a query shard, an eighth for each of two reference
        blocks (one searched, one being read), half for the search of each block pair.
        The compiled numba kernels keep a copy of the reference for linf: when it does not
        fit an explicit budget, 'auto' runs torch and 'numba' is a one-line error.
    progress
        True for a progress bar on stderr, or a callable receiving query counts done.
    info
        Optional dict that receives details: backend, device, queries recomputed exactly.

    Returns
    -------
    distances : float64 array (n_queries, k)
        Ascending per row; +inf where fewer than k rows of another label exist.
    indices : int64 array (n_queries, k)
        Row indices into ``reference``; ties go to the lowest index; -1 with +inf.
    """
    if _streams(reference, queries):
        from .stream import stream_search

        dist, idx, _ = stream_search(
            reference, reference_labels, queries, query_labels, norm=norm, k=k, backend=backend,
            device=device, raw=raw, block_size=block_size, memory_budget=memory_budget,
            progress=progress, info=info,
        )
        return dist[:, 0, :], idx[:, 0, :]
    problem = make_problem(reference, reference_labels, queries, query_labels, norm=norm, k=k)
    dist, idx = _search(problem, backend, device, raw, block_size, memory_budget, progress, info)
    return dist[:, 0, :], idx[:, 0, :]


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

    Returns
    -------
    distances : float64 array (n_queries, n_classes)
        ``distances[q, i]`` = distance from query q to the nearest row of ``classes[i]``.
    indices : int64 array (n_queries, n_classes)
        Row index into ``reference`` of that nearest row; ties go to the lowest index.
    classes : int64 array (n_classes,)
        The sorted unique reference labels (the column order).
    """
    if _streams(reference, queries):
        from .stream import stream_search

        dist, idx, classes = stream_search(
            reference, reference_labels, queries, None, grouping=Grouping.BY_CLASS, norm=norm,
            backend=backend, device=device, raw=raw, block_size=block_size,
            memory_budget=memory_budget, progress=progress, info=info,
        )
        return dist[:, :, 0], idx[:, :, 0], classes
    problem = make_by_class_problem(reference, reference_labels, queries, norm=norm)
    dist, idx = _search(problem, backend, device, raw, block_size, memory_budget, progress, info)
    return dist[:, :, 0], idx[:, :, 0], problem.classes


def _streams(reference: Any, queries: Any) -> bool:
    """True when the search streams: reference or queries is a row source or a file
    (:func:`sepcheck.engine.sources.is_source`)."""
    from .sources import is_source

    return is_source(reference) or (queries is not None and is_source(queries))


def _search(
    problem: Problem,
    backend: str,
    device: str,
    raw: bool,
    block_size: int | None,
    memory_budget: int | None,
    progress: bool | Callable[[int], None],
    info: dict | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline of both wrappers: slots (m, S, k) in reported units."""
    block_size, budget = search_limits(block_size, memory_budget)
    name, dev, budget = plan_backend(problem, backend, device, budget, memory_budget is not None)
    dist, idx, extra = run_backend(problem, name, dev, budget, block_size, progress)
    dist = final_distances(problem, dist, idx) / scale_of(problem, raw)
    if info is not None:
        info.update({"backend": name, "device": dev, **extra})
    return dist, idx


def plan_backend(
    problem: Problem, backend: str, device: str, budget: int, explicit: bool
) -> tuple[str, str, int | None]:
    """(backend, device, budget) that run a problem: :func:`choose`, then the memory rule
    of the compiled kernels (their copy of the reference must fit an ``explicit`` budget:
    'auto' takes torch instead, 'numba' is a one-line error); triton without an explicit
    budget sizes itself from free GPU memory (budget None)."""
    name, dev = choose(problem, backend, device)
    if explicit:
        name = within_budget(problem, name, backend, budget, budget)
    if name == "triton" and not explicit:
        return name, dev, None  # the GPU kernels size themselves from torch.cuda.mem_get_info
    return name, dev, budget


def numba_copy_bytes(problem: Problem) -> int:
    """Bytes the compiled kernels keep besides their output (an upper estimate): linf a
    feature-permuted copy of the reference, l1 its group sums; the kernels have no blocks,
    so under an explicit memory budget that is too small 'auto' takes torch instead."""
    share = 1.1 if np.isinf(problem.p) else 0.25
    return int(share * problem.reference.nbytes) + 4 * 2**20


def within_budget(problem: Problem, name: str, backend: str, share: int, budget: int) -> str:
    """``name``, or 'torch' for 'numba' chosen by 'auto' when the compiled kernels' copy of
    the reference (:func:`numba_copy_bytes`) exceeds ``share`` of an explicit ``budget``;
    'numba' asked for by name is then a one-line error."""
    if name != "numba" or numba_copy_bytes(problem) <= share:
        return name
    if str(backend).lower() != "auto":
        raise SepcheckError(
            f"backend 'numba' keeps a copy of the reference "
            f"({numba_copy_bytes(problem) / 2**20:.0f}MiB) beyond its share "
            f"({share / 2**20:.0f}MiB) of memory_budget={budget / 2**20:.0f}MiB: raise "
            "memory_budget or use backend='torch'"
        )
    return "torch"  # 'auto' keeps the budget with the blocked backend


#: bytes of a search's fixed temporaries outside its blocks (exact rerank chunks, norms)
FIXED_TEMPORARIES = 8 * 2**20


def split_budget(problem: Problem, budget: int) -> tuple[int, int]:
    """(queries per call, bytes for the blocks) of a torch or faiss search within ``budget``.

    Besides its blocks a search allocates fixed temporaries (:data:`FIXED_TEMPORARIES`),
    norms and labels per reference row, and candidate lists per query: queries go to the
    backend in chunks whose lists fit a quarter of the budget, and the blocks get the rest.
    """
    from .candidates import EXTRA_CANDIDATES

    per_query = problem.n_slots * (problem.k + EXTRA_CANDIDATES) * 40 + 64
    fixed = FIXED_TEMPORARIES + problem.n_ref * 24
    chunk = max(1, min(problem.n_query, (budget // 4) // per_query))
    left = budget - fixed - chunk * per_query
    if left < budget // 4:
        need = (fixed + per_query) * 2
        raise SepcheckError(
            f"memory_budget={budget} bytes is too small for {problem.n_ref} reference rows: "
            f"give at least {need / 2**20:.0f}MiB"
        )
    return chunk, left


def run_backend(
    problem: Problem,
    name: str,
    device: str,
    budget: int | None,
    block_size: int | None,
    progress: bool | Callable[[int], None],
    seed: np.ndarray | None = None,
    ordered: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run one backend on a validated problem; slots (m, S, k) in raw units. ``budget`` is
    None only for triton (free GPU memory decides). torch and faiss get the queries in
    chunks (see :func:`split_budget`). ``seed`` (m, S): exact raw distances that rows of
    lower index already reach k times (a streamed search's earlier blocks); the numba
    kernels then search only for closer rows and pad with (seed, -1) (see
    :func:`sepcheck.engine.simd.search_simd`); other backends ignore it. Give it only where
    the kernel's distances are exact (uint8). ``ordered``: the features are in the numba
    linf kernel's order already (no permuted copies)."""
    from ..core.progress import progress_callback

    label = "nearest by class" if problem.by_class else "nearest other"
    with progress_callback(progress, problem.n_query, f"{label} ({name})") as tick:
        if name == "numba":
            from . import numba_backend

            return numba_backend.search(problem, tick, seed=seed, ordered=ordered)
        if name not in ("torch", "faiss"):
            return _run_one(problem, name, device, budget, block_size, tick)
        chunk, blocks = split_budget(problem, budget)
        if chunk >= problem.n_query:
            return _run_one(problem, name, device, blocks, block_size, tick)
        shape = (problem.n_query, problem.n_slots, problem.k)
        dist, idx = np.empty(shape), np.empty(shape, dtype=np.int64)
        extra: dict = {}
        for s in range(0, problem.n_query, chunk):
            rows = slice(s, s + chunk)
            d, i, e = _run_one(problem.subset(rows), name, device, blocks, block_size, tick)
            dist[rows], idx[rows] = d, i
            for key, v in e.items():
                extra[key] = extra.get(key, 0) + v
        return dist, idx, extra


def _run_one(
    problem: Problem,
    name: str,
    device: str,
    budget: int | None,
    block_size: int | None,
    tick: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    if name == "triton":
        from .triton_backend import search_triton

        return search_triton(
            problem.queries, problem.query_labels, problem.reference,
            problem.reference_labels, p=problem.p, k=problem.k,
            slot_of_row=problem.codes if problem.by_class else None,
            n_slots=problem.n_slots, device=device, memory_budget=budget,
            block_size=block_size, progress=tick,
        )
    if name == "faiss":
        from . import faiss_backend

        return faiss_backend.search(problem, device, budget, block_size, tick)
    import torch

    from . import torch_backend

    if problem.p == 2 and problem.dim > torch_backend.DIRECT_L2_MAX_DIM:
        from . import l2

        return l2.search(problem, torch.device(device), budget, block_size, tick)
    return torch_backend.search(problem, torch.device(device), budget, block_size, tick)


def final_distances(problem: Problem, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Distances of the chosen neighbours (slots (m, S, k)) from one exact routine, so that
    every backend reports bit-identical values (torch's sqrt and summation order may differ
    by an ulp). uint8 linf/l1 are exact integers in every backend already."""
    if problem.integer and is_linf_or_l1(problem.p):
        return dist
    from .exact import pair_distances

    m, S, k = idx.shape
    return pair_distances(
        problem.queries, problem.reference, idx.reshape(m, S * k), problem.p
    ).reshape(m, S, k)


def __getattr__(name: str):
    """The radius search is loaded on first use (its module imports this one)."""
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
    "BACKENDS",
    "BY_CLASS_BACKENDS",
    "DEVICES",
    "Grouping",
    "Problem",
    "make_problem",
    "make_by_class_problem",
    "resolve_device",
]
