"""ResNet-50 (He et al. 2016) in plain torch, the architecture of the paper's Restricted
ImageNet runs (bottleneck blocks 3-4-6-3, ImageNet stem)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int, dropout: float) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.dropout(torch.relu(self.bn2(self.conv2(y))))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """Bottleneck ResNet; ``layers=(3, 4, 6, 3)`` is ResNet-50.

    Initialised as torchvision's ``resnet50`` (which the paper's code copies): Kaiming-normal
    convolutions, BN weight 1 and bias 0, and by default *no* zero-init of each block's last
    BN (torchvision's ``zero_init_residual=False``); ``zero_init_residual=True`` zeroes it
    (often steadier early training, not the paper's network)."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), in_channels: int = 3, n_classes: int = 1000,
                 base_width: int = 64, dropout: float = 0.0, zero_init_residual: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, base_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        stages: list[nn.Module] = []
        cin = base_width
        for i, count in enumerate(layers):
            width = base_width * 2**i
            for j in range(count):
                stages.append(_Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1, dropout))
                cin = width * _Bottleneck.expansion
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, _Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(x, 3, 2, 1)
        x = self.layers(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
