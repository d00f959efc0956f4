"""Clean accuracy of a network, shared by the trainer and the evaluation."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, device: torch.device,
             batch_size: int = 512, channels_last: bool = False) -> float:
    """Clean accuracy (eval mode), in [0, 1]."""
    was = model.training
    model.eval()
    correct = 0
    for s in range(0, X.shape[0], batch_size):
        xb = X[s : s + batch_size].to(device)
        if channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        correct += int((model(xb).argmax(1).cpu() == y[s : s + batch_size]).sum())
    model.train(was)
    return correct / max(1, X.shape[0])


__all__ = ["accuracy"]
