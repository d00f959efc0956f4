"""The MNIST CNN of the paper (its code's ``CNN001``, the PyTorch MNIST example network)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MnistCNN(nn.Module):
    """conv 32-3, ReLU, conv 64-3, max-pool 2, channel dropout 0.25, fc 128, ReLU, dropout 0.5, fc.

    As in the paper's code (``CNN001``) there is no ReLU between the second convolution and
    the max-pool, and the first dropout is ``Dropout2d(0.25)`` (whole feature maps). The
    second is element-wise here: the reference applies ``Dropout2d(0.5)`` to the flat
    (batch, 128) features, where torch's behaviour depends on its version (a 2-D input is
    taken as unbatched (C, L)); element-wise dropout is the intended layer.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, image_size: tuple[int, int] = (28, 28)) -> None:
        super().__init__()
        h, w = image_size
        if h < 6 or w < 6:
            raise ValueError("the MNIST CNN needs images of at least 6 x 6 pixels")
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout2d(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * ((h - 4) // 2) * ((w - 4) // 2), 128)
        self.fc2 = nn.Linear(128, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.conv1(x))
        x = nn.functional.max_pool2d(self.conv2(x), 2)
        x = self.dropout1(x)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(self.dropout2(x))
