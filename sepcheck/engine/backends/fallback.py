"""Exact recomputation for queries an approximate backend could not prove complete.

linf and l1 on the CPU go to the compiled kernel; everything else to torch's exact tiles
(on the same device).
"""

from __future__ import annotations

import numpy as np

from ..problem import Problem, is_linf_or_l1


def exact_search(problem: Problem, device: str, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact search of either grouping (slots (m, S, k), raw units) without any
    approximation."""
    if device == "cpu" and is_linf_or_l1(problem.p):
        from . import numba_backend

        d, i, _ = numba_backend.search(problem)
        return d, i
    import torch

    from . import torch_backend

    return torch_backend.brute_force(problem, torch.device(device), budget)
