"""The exact nearest-different-label engine.

:func:`nearest_other` is the functional core (in the spirit of ``faiss.knn``): for every
query row, the k nearest reference rows whose label differs from the query's label.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..devices import DEVICES, resolve_device
from ..errors import SepcheckError
from .problem import Problem, make_problem, scale_of, search_limits

BACKENDS = ("auto", "numba", "torch", "faiss")


def choose_backend(problem: Problem, backend: str, device: str) -> str:
    """The backend that runs: 'auto' picks the fastest exact one (see README benchmark).

    CPU: the compiled kernel for linf and l1, the torch GEMM path for l2, torch for other p.
    CUDA: torch.
    """
    b = str(backend).lower()
    if b not in BACKENDS:
        raise SepcheckError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if b == "auto":
        if device == "cpu" and (math.isinf(problem.p) or problem.p == 1):
            return "numba"
        return "torch"
    if b == "numba":
        if device != "cpu":
            raise SepcheckError("backend 'numba' runs on the CPU only: use device='cpu' or backend='torch'")
        if not (math.isinf(problem.p) or problem.p == 1):
            raise SepcheckError(
                "backend 'numba' computes linf and l1 only: use backend='torch' or 'faiss' for "
                f"p={problem.p:g}"
            )
    return b


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
        uint8 or floating; uint8 stays uint8 in memory.
    queries, query_labels
        Rows to search for; ``None`` (both) means the reference set against itself.
    norm
        'linf', 'l2', 'l1' or any float p >= 1.
    k
        Neighbours per query.
    backend
        'auto' (fastest exact one for the norm, dtype and device), 'numba' (compiled CPU
        kernel, linf and l1), 'torch' (blocked, CPU or CUDA, every norm) or 'faiss'.
    device
        'auto', 'cpu' or 'cuda'.
    raw
        uint8 input: report distances in raw pixel units (0-255) instead of the default
        [0, 1] pixel scale (raw / 255). Ignored for floating input.
    block_size
        Rows per block (queries and references), overriding the memory budget.
    memory_budget
        Extra bytes the blocks may use (default 512 MiB).
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
    problem = make_problem(reference, reference_labels, queries, query_labels, norm=norm, k=k)
    block_size, budget = search_limits(block_size, memory_budget)
    dev = resolve_device(device)
    name = choose_backend(problem, backend, dev)
    dist, idx, extra = run_backend(problem, name, dev, budget, block_size, progress)
    dist = final_distances(problem, dist, idx) / scale_of(problem, raw)
    if info is not None:
        info.update({"backend": name, "device": dev, **extra})
    return dist, idx


def run_backend(
    problem: Problem,
    name: str,
    device: str,
    budget: int,
    block_size: int | None,
    progress: bool | Callable[[int], None],
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Run one backend on a validated problem; distances in raw units."""
    from ..progress import progress_callback

    with progress_callback(progress, problem.n_query, f"nearest other ({name})") as tick:
        if name == "numba":
            from . import numba_backend

            return numba_backend.search(problem, tick, _threads())
        if name == "faiss":
            from . import faiss_backend

            return faiss_backend.search(problem, device, budget, block_size, tick)
        import torch

        from . import torch_backend

        return torch_backend.search(problem, torch.device(device), budget, block_size, tick)


def final_distances(problem: Problem, dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Distances of the chosen neighbours from one exact routine, so that every backend
    reports bit-identical values (torch's sqrt and summation order may differ by an ulp).
    uint8 linf/l1 are exact integers in every backend already."""
    if problem.integer and (math.isinf(problem.p) or problem.p == 1):
        return dist
    from .exact import pair_distances

    return pair_distances(problem.queries, problem.reference, idx, problem.p)


def _threads() -> int | None:
    env = os.environ.get("SEPCHECK_THREADS")
    return int(env) if env else None


__all__ = ["nearest_other", "BACKENDS", "DEVICES", "Problem", "make_problem"]
