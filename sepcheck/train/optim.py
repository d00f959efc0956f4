"""The optimizer and the learning-rate schedule of a run."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def make_optimizer(name: str, model: nn.Module, *, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """``adam`` (weight decay) or ``sgd`` (momentum, weight decay) over the model's parameters."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


class LRSchedule:
    """Learning rate per epoch (1-based): ``step`` divides by 10 after 50% and 75% of the
    epochs, ``cosine`` anneals to 0, ``constant`` keeps it."""

    def __init__(self, name: str, base_lr: float, epochs: int, milestones: Any = None) -> None:
        self.name, self.base_lr, self.epochs, self.last_epoch = name, float(base_lr), int(epochs), 0
        #: ``step`` with explicit milestones (x0.1 after each, as torch's MultiStepLR)
        self.milestones = None if milestones is None else [int(m) for m in milestones]

    def lr(self, epoch: int) -> float:
        if self.name == "constant":
            return self.base_lr
        if self.name == "cosine":
            return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        milestones = self.milestones if self.milestones is not None else [int(self.epochs * 0.5),
                                                                          int(self.epochs * 0.75)]
        passed = sum(1 for m in milestones if m > 0 and epoch > m)
        return self.base_lr * 0.1**passed

    def step(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        lr = self.lr(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.last_epoch = epoch
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base_lr": self.base_lr, "epochs": self.epochs, "last_epoch": self.last_epoch,
                "milestones": self.milestones}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.name, self.base_lr = str(state["name"]), float(state["base_lr"])
        self.epochs, self.last_epoch = int(state["epochs"]), int(state["last_epoch"])
        self.milestones = state.get("milestones")


__all__ = ["LRSchedule", "make_optimizer"]
