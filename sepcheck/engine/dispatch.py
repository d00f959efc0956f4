"""Which backend runs a problem, within which memory, and running it: the one place of the
engine's dispatch (the public functions of :mod:`sepcheck.engine`, the streamed search
of :mod:`.stream` and the radius search of :mod:`.radius` all call it).

:func:`choose` picks (backend, device) by what each backend computes and where it runs;
:func:`plan_backend` adds the memory rule; :func:`run_backend` runs the backend module's
``search`` on a validated :class:`~sepcheck.engine.problem.Problem` (see the backend
contract in :mod:`sepcheck.engine`); :func:`final_distances` recomputes the chosen
neighbours' distances with one exact routine. The radius search's choice and run are
:func:`choose_radius` and :func:`run_radius_backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from ..core.devices import resolve_device
from ..core.errors import SepcheckError
from .options import BACKENDS, BY_CLASS_BACKENDS, RADIUS_BACKENDS
from .problem import Problem, is_linf_or_l1

BackendName = Literal["auto", "numba", "torch", "faiss", "triton"]
#: backends that run on the CPU only (faiss too when it has no GPU support)
CPU_ONLY_BACKENDS = ("numba",)


def _cpu_only(backend: str) -> bool:
    if backend in CPU_ONLY_BACKENDS:
        return True
    if backend == "faiss":
        from .backends.faiss_backend import has_gpu

        return not has_gpu()
    return False


def _triton_usable() -> bool:
    """True when triton imports (CUDA builds of torch ship it; the ``gpu`` extra otherwise)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _numba_computes(problem: Problem) -> str | None:
    if is_linf_or_l1(problem.p):
        return None
    return f"backend 'numba' computes linf and l1 only: use backend='torch' or 'faiss' for p={problem.p:g}"


def _triton_computes(problem: Problem) -> str | None:
    if is_linf_or_l1(problem.p) or (problem.p == 2 and problem.integer):
        return None
    return ("backend 'triton' computes linf, l1 and uint8 l2 only: use backend='torch' for "
            f"p={problem.p:g}" + (" on float rows" if problem.p == 2 else ""))


def _numba_runs_on(device: str) -> str | None:
    if device == "cpu":
        return None
    return "backend 'numba' runs on the CPU only: use device='cpu' or backend='torch'"


def _faiss_runs_on(device: str) -> str | None:
    if device == "cpu" or not _cpu_only("faiss"):
        return None
    return ("backend 'faiss' on CUDA needs faiss with GPU support: install faiss-gpu-cu12, "
            "or use device='cpu' or backend='torch'")


#: per backend, whether it computes a problem (its norm, dtype): None, or the one-line
#: reason and fix (the grouping is checked against BY_CLASS_BACKENDS); like scikit-learn's
#: ``is_usable_for``, without importing the backend (numba or torch) to ask
COMPUTES: dict[str, Callable[[Problem], str | None]] = {
    "numba": _numba_computes,
    "triton": _triton_computes,
}
#: per backend, whether it runs on a resolved device: None, or the reason and fix
RUNS_ON: dict[str, Callable[[str], str | None]] = {
    "numba": _numba_runs_on,
    "faiss": _faiss_runs_on,
}


def can_run(backend: str, problem: Problem, device: str | None = None, given: str | None = None) -> str | None:
    """None when ``backend`` (lower case) computes ``problem`` (and runs on the resolved
    ``device`` when given), else the one-line reason and fix (naming the backend as the
    caller ``given`` it)."""
    allowed = BY_CLASS_BACKENDS if problem.by_class else BACKENDS
    name = backend if given is None else given
    if backend not in allowed:
        if backend in BACKENDS:
            return f"backend {name!r} does not search per class: use one of {', '.join(allowed)}"
        return f"unknown backend {name!r}: use one of {', '.join(allowed)}"
    why = COMPUTES.get(backend, lambda _: None)(problem)
    if why is None and device is not None:
        why = RUNS_ON.get(backend, lambda _: None)(device)
    return why


def choose(problem: Problem, backend: str, device: str) -> tuple[str, str]:
    """(backend that runs, resolved device) for a problem.

    'auto' picks the fastest exact backend (see README benchmark): on the CPU the compiled
    kernel for linf and l1, the torch GEMM path for l2, torch for other p; on CUDA the
    Triton kernels for linf and l1 (torch when triton is missing) and torch otherwise.
    'triton' runs on CUDA, or on the CPU only under ``TRITON_INTERPRET=1`` (tests).
    A CPU-only backend (numba; faiss without GPU support) implies the CPU under
    ``device='auto'``; asked for explicitly on CUDA it is a one-line error naming the fix.
    A backend named explicitly must pass :func:`can_run`.
    """
    b = str(backend).lower()
    why = can_run(b, problem, given=backend) if b != "auto" else None
    if why is not None:
        raise SepcheckError(why)
    auto_device = str(device).strip().lower() == "auto"
    dev = "cpu" if (auto_device and b != "auto" and _cpu_only(b)) else resolve_device(device)
    if b == "auto":
        if is_linf_or_l1(problem.p):
            if dev == "cpu":
                return "numba", dev
            if _triton_usable():
                return "triton", dev
        return "torch", dev
    why = can_run(b, problem, dev)
    if why is not None:
        raise SepcheckError(why)
    return b, dev


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
    from .kernels.candidates import EXTRA_CANDIDATES

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
    :func:`sepcheck.engine.kernels.simd.search_simd`); other backends ignore it. Give it only where
    the kernel's distances are exact (uint8). ``ordered``: the features are in the numba
    linf kernel's order already (no permuted copies)."""
    from ..core.progress import progress_callback

    label = "nearest by class" if problem.by_class else "nearest other"
    with progress_callback(progress, problem.n_query, f"{label} ({name})") as tick:
        if name == "numba":
            from .backends import numba_backend

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
        from .backends.triton_backend import search_triton

        return search_triton(
            problem.queries, problem.query_labels, problem.reference,
            problem.reference_labels, p=problem.p, k=problem.k,
            slot_of_row=problem.codes if problem.by_class else None,
            n_slots=problem.n_slots, device=device, memory_budget=budget,
            block_size=block_size, progress=tick,
        )
    if name == "faiss":
        from .backends import faiss_backend

        return faiss_backend.search(problem, device, budget, block_size, tick)
    import torch

    from .backends import torch_backend

    if problem.p == 2 and problem.dim > torch_backend.DIRECT_L2_MAX_DIM:
        from .backends import l2

        return l2.search(problem, torch.device(device), budget, block_size, tick)
    return torch_backend.search(problem, torch.device(device), budget, block_size, tick)


def final_distances(problem: Problem, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Distances of the chosen neighbours (slots (m, S, k)) from one exact routine, so that
    every backend reports bit-identical values (torch's sqrt and summation order may differ
    by an ulp). uint8 linf/l1 are exact integers in every backend already."""
    if problem.integer and is_linf_or_l1(problem.p):
        return dist
    from .kernels.exact import pair_distances

    m, S, k = idx.shape
    return pair_distances(
        problem.queries, problem.reference, idx.reshape(m, S * k), problem.p
    ).reshape(m, S, k)


def choose_radius(
    problem: Problem, backend: str, device: str, explicit_budget: bool, budget: int
) -> tuple[str, str]:
    """(backend that runs, device) of a radius search: :func:`choose`'s
    rules over :data:`RADIUS_BACKENDS` (the GPU kernels' slot of 'auto' runs torch), and
    the compiled kernels' copy of the reference within half of an explicit budget (see
    :func:`within_budget`)."""

    b = str(backend).lower()
    if b not in RADIUS_BACKENDS:
        raise SepcheckError(
            f"backend {backend!r} has no radius search: use one of {', '.join(RADIUS_BACKENDS)}"
        )
    name, dev = choose(problem, b, device)
    if explicit_budget:
        name = within_budget(problem, name, b, budget // 2, budget)
    return ("torch" if name == "triton" else name), dev


def run_radius_backend(problem, name, device, budget, block_size, max_pairs, threshold, on_block, tick) -> dict:
    """One backend's candidate pairs of a radius search to ``on_block``; its details for ``info``."""
    if name == "numba":
        from .backends import numba_backend

        out = numba_backend.radius_search(problem, threshold, on_block, max_pairs, tick)
        return {"pruning": out["pairs"], "extra_bytes": out["extra_bytes"]}
    import torch

    from .backends import torch_backend

    dev = torch.device(device)
    if problem.p == 2 and problem.dim > torch_backend.DIRECT_L2_MAX_DIM:
        from .backends import l2

        return l2.radius_pairs(problem, dev, budget, block_size, max_pairs, threshold, on_block, tick)
    torch_backend.radius_pairs(problem, dev, budget, block_size, max_pairs, threshold, on_block, tick)
    return {}
