"""Reproducibility of a run: the epoch order from ``(seed, epoch)``, the generator states saved
with each checkpoint, and torch's deterministic mode.

The epoch order comes from ``(seed, epoch)`` only; dropout, augmentation and attack starts come
from the global torch generator, whose state is saved with every epoch, so a resumed run
reproduces the uninterrupted one exactly on the CPU (same thread count). On CUDA this needs
``deterministic=True`` as well (:func:`deterministic_mode`): several cuDNN/cuBLAS kernels are
otherwise nondeterministic.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from . import distributed

#: the cuBLAS workspace setting that makes cuBLAS deterministic (NVIDIA's documentation)
CUBLAS_WORKSPACE = ":4096:8"


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, ctx: distributed.DistContext) -> list[torch.Tensor]:
    """This process's share of every batch: the global order depends on (seed, epoch) only."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    perm = torch.randperm(n, generator=gen)
    out = []
    for start in range(0, n, batch_size):
        b = perm[start : start + batch_size]
        if ctx.enabled:
            if b.numel() < ctx.world_size:
                continue
            b = b[ctx.rank :: ctx.world_size]
        out.append(b)
    return out


def rng_state(ctx: distributed.DistContext, device: torch.device) -> dict[str, Any]:
    """Every process's CPU (and CUDA) generator state, gathered for the checkpoint."""
    state: dict[str, Any] = {"torch": distributed.gather_tensor(torch.get_rng_state(), ctx, device)}
    if device.type == "cuda":
        state["cuda"] = distributed.gather_tensor(torch.cuda.get_rng_state(device), ctx, device)
    return state


def restore_rng(state: dict[str, Any], ctx: distributed.DistContext, device: torch.device) -> bool:
    """Restore this process's generators; False when the checkpoint came from a different
    number of processes (then the resumed run is not bit-identical)."""
    states = state.get("torch", [])
    if len(states) != ctx.world_size:
        return False
    torch.set_rng_state(states[ctx.rank])
    if device.type == "cuda" and len(state.get("cuda", [])) == ctx.world_size:
        torch.cuda.set_rng_state(state["cuda"][ctx.rank], device)
    return True


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """With ``enabled``: torch's deterministic algorithms, cuDNN without autotuning and
    ``CUBLAS_WORKSPACE_CONFIG`` set (unless the user set it); everything restored after."""
    if not enabled:
        yield
        return
    prev = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
            torch.backends.cudnn.deterministic, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = prev[1], prev[2]
        if prev[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


__all__ = ["CUBLAS_WORKSPACE", "epoch_batches", "rng_state", "restore_rng", "deterministic_mode"]
