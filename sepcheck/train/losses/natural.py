"""Natural training: the cross-entropy of the clean inputs."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of ``model(x)``; returns ``(loss, logits)``."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits
