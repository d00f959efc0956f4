"""Exact recomputation for queries an approximate backend could not prove complete.

linf and l1 on the CPU go to the compiled kernel; everything else to torch's exact tiles
(on the same device).
"""

from __future__ import annotations

import math

import numpy as np

from .problem import Problem


def exact_search(problem: Problem, device: str, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest different-label rows (raw units) without any approximation."""
    if device == "cpu" and (math.isinf(problem.p) or problem.p == 1):
        from . import numba_backend

        d, i, _ = numba_backend.search(problem)
        return d, i
    import torch

    from . import torch_backend

    return torch_backend.brute_force(problem, torch.device(device), budget)
