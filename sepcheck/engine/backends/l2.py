"""Which exact l2 path a torch-backend search takes, and running it.

Three exact paths compute l2 for rows of more than ``DIRECT_L2_MAX_DIM`` features:

* ``projection``: projection lower bounds prune almost every pair, the rest get exact
  distances (:mod:`sepcheck.engine.backends.projection`, compiled CPU kernels); fast wherever the
  data has a few dominant directions, as natural images do, and on any CPU (a float32 GEMM
  of a few dozen columns). On CUDA the same bounds run as torch operations
  (:mod:`sepcheck.engine.backends.projection_torch`) when forced: not yet timed on a GPU, so 'auto'
  does not pick it there;
* ``int8`` (uint8 rows): exact squared distances from an int8 GEMM, where it is exact and
  fast (VNNI/AMX CPUs, CUDA: :func:`sepcheck.engine.backends.torch_backend.use_int8`);
* ``float32``: float32 GEMM candidates reranked exactly (any data, any device).

``SEPCHECK_L2_PATH`` forces one ('auto' by default). Under 'auto' (:func:`choose_path`):
on the CPU projection when the rows are long and many enough and its arrays fit the memory
budget (on natural images it is as fast as the int8 GEMM of a VNNI/AMX CPU at 10 000 rows
and faster beyond, and it needs no int8 instruction); otherwise, and on CUDA, int8 for
uint8 rows where it is exact and fast, else float32. An automatic projection search that finds after its first query
block that the bound prunes too little (more than :data:`GIVE_UP` of the pairs need their
projected distance refined) searches the remaining queries by the GEMM path instead; the
result's ``info`` says which paths ran (``l2_path``) and how many pairs the bound left.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..problem import Problem
from . import projection, torch_backend
from .numba_backend import numba_threads

#: projection under 'auto': at least this many features ...
PROJECTION_MIN_DIM = 64
#: ... and this many reference rows (below, fitting the directions is not repaid)
PROJECTION_MIN_ROWS = 2048
#: an automatic projection search gives up after its first block when more than this share
#: of the pairs passed the GEMM bound (the data has no few dominant directions)
GIVE_UP = 0.1
#: queries in the first block of an automatic projection search (the probe of GIVE_UP)
PROBE_QUERIES = 64


def choose_path(problem: Problem, device: torch.device, budget: int) -> str:
    """'projection', 'int8' or 'float32' for an l2 problem of more than DIRECT_L2_MAX_DIM
    features (see the module docstring)."""
    setting = torch_backend.l2_path_setting()
    if setting == "int8":
        return "int8" if torch_backend.use_int8(problem, device) else "float32"
    if setting == "projection":
        return "projection"
    if setting == "float32":
        return "float32"
    if (
        device.type == "cpu"
        and problem.dim >= PROJECTION_MIN_DIM
        and problem.n_ref >= PROJECTION_MIN_ROWS
        and projection.memory_needed(problem) <= budget
    ):
        return "projection"
    return "int8" if torch_backend.use_int8(problem, device) else "float32"


def search(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact l2 search (rows of more than DIRECT_L2_MAX_DIM features) by the path of
    :func:`choose_path`; results (m, S, k) and ``extra`` with ``l2_path``."""
    path = choose_path(problem, device, budget)
    if path != "projection":
        return torch_backend.search(problem, device, budget, block_size, progress)
    if device.type != "cpu":  # forced: the torch version (not timed on a GPU yet)
        from . import projection_torch

        d2, idx, extra = projection_torch.search(problem, device, budget, block_size, progress)
        return np.sqrt(d2), idx, extra
    auto = torch_backend.l2_path_setting() == "auto"
    with numba_threads():
        d2, idx, extra, done = projection.search(
            problem, budget, block_size, progress, give_up=GIVE_UP if auto else np.inf,
            first_block=PROBE_QUERIES if auto else None,
        )
    dist = np.sqrt(d2)
    if done < problem.n_query:  # the bound did not pay: the rest by the GEMM path
        rest = problem.subset(slice(done, None))
        d_r, i_r, e_r = torch_backend.search(rest, device, budget, block_size, progress)
        dist[done:], idx[done:] = d_r, i_r
        extra["l2_path"] = f"projection (first {done} queries), then {e_r.pop('l2_path')}"
        extra.update(e_r)
    return dist, idx, extra


def radius_pairs(
    problem: Problem,
    device: torch.device,
    budget: int,
    block_size: int | None,
    max_pairs: int,
    threshold: float,
    on_block: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray | None], None],
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Every pair within ``threshold`` (an l2 radius search of rows of more than
    DIRECT_L2_MAX_DIM features) by the path of :func:`choose_path`: projection bounds on the
    CPU (:func:`sepcheck.engine.backends.projection.radius_pairs`), else the torch tiles of the int8
    or float32 GEMM (:func:`sepcheck.engine.backends.torch_backend.radius_pairs`); ``extra`` for
    ``info`` with ``l2_path``."""
    if device.type == "cpu" and choose_path(problem, device, budget) == "projection":
        with numba_threads():
            return projection.radius_pairs(
                problem, budget, block_size, max_pairs, threshold, on_block, progress
            )
    torch_backend.radius_pairs(
        problem, device, budget, block_size, max_pairs, threshold, on_block, progress
    )
    return {"l2_path": "int8" if torch_backend.use_int8(problem, device) else "float32"}
