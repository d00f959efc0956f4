"""Small networks: a tiny CNN for tests and quick checks, and an MLP for feature vectors."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TinyCNN(nn.Module):
    """conv 8-3, ReLU, max-pool 2, conv 16-3, ReLU, global average pool, fc (no dropout)."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv1(x))
        if min(x.shape[-2:]) >= 2:
            x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


class MLP(nn.Module):
    """Flatten, fc ``hidden``, ReLU, fc (the paper's MLP for non-image data)."""

    def __init__(self, input_shape: tuple[int, ...], n_classes: int = 10, hidden: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(int(math.prod(input_shape)), hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))
