"""Architectures by name, in plain torch (no torchvision).

=================  ==============================================================
name               network
=================  ==============================================================
mnist_cnn          the paper's MNIST CNN (conv 32-3, conv 64-3, pool, fc 128, fc)
wrn40_10           Wide-ResNet-40-10 (CIFAR-10, SVHN)
wrn40_10_drop20    WRN-40-10 with dropout 0.2 in each block
wrn40_10_drop50    WRN-40-10 with dropout 0.5 in each block
resnet50           ResNet-50 (Restricted ImageNet)
tiny_cnn           two small convolutions (tests, quick checks)
mlp                one hidden layer of 256 (feature vectors)
=================  ==============================================================

Without an explicit name :func:`default_arch` picks by input shape: the MNIST CNN for
1x28x28, WRN-40-10 for 3x32x32, ResNet-50 for larger images, the tiny CNN for other small
images and the MLP for flat feature vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ...core.errors import SepcheckError
from .mnist_cnn import MnistCNN
from .resnet import ResNet
from .small import MLP, TinyCNN
from .wide_resnet import WideResNet

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Arch:
    """A registered architecture: a factory ``(input_shape, n_classes) -> nn.Module``."""

    name: str
    description: str
    factory: Callable[[Shape, int], nn.Module]
    images_only: bool = True


def _channels(shape: Shape) -> int:
    return int(shape[0])


ARCHS: dict[str, Arch] = {}


def register_arch(name: str, description: str, factory: Callable[[Shape, int], nn.Module],
                  images_only: bool = True) -> None:
    """Add an architecture to the registry (a user's own network included)."""
    ARCHS[name] = Arch(name, description, factory, images_only)


register_arch("mnist_cnn", "the paper's MNIST CNN",
              lambda s, k: MnistCNN(_channels(s), k, (int(s[1]), int(s[2]))))
register_arch("wrn40_10", "Wide-ResNet-40-10", lambda s, k: WideResNet(40, 10, _channels(s), k, 0.0))
register_arch("wrn40_10_drop20", "Wide-ResNet-40-10, dropout 0.2",
              lambda s, k: WideResNet(40, 10, _channels(s), k, 0.2))
register_arch("wrn40_10_drop50", "Wide-ResNet-40-10, dropout 0.5",
              lambda s, k: WideResNet(40, 10, _channels(s), k, 0.5))
register_arch("resnet50", "ResNet-50", lambda s, k: ResNet((3, 4, 6, 3), _channels(s), k))
register_arch("tiny_cnn", "tiny CNN (tests)", lambda s, k: TinyCNN(_channels(s), k))
register_arch("mlp", "MLP, one hidden layer of 256", lambda s, k: MLP(tuple(s), k), images_only=False)


def default_arch(input_shape: Shape) -> str:
    """The architecture used without ``--arch``, from the shape of one input."""
    s = tuple(int(v) for v in input_shape)
    if len(s) != 3:
        return "mlp"
    c, h, w = s
    if (c, h, w) == (1, 28, 28):
        return "mnist_cnn"
    if (c, h, w) == (3, 32, 32):
        return "wrn40_10"
    if min(h, w) > 32:
        return "resnet50"
    return "tiny_cnn"


def build_model(name: str, input_shape: Shape, n_classes: int) -> nn.Module:
    """Instantiate a registered architecture for inputs of ``input_shape`` (C, H, W) or (D,)."""
    if name not in ARCHS:
        raise SepcheckError(f"unknown architecture {name!r}: use one of {', '.join(ARCHS)}")
    arch = ARCHS[name]
    shape = tuple(int(v) for v in input_shape)
    if arch.images_only and len(shape) != 3:
        raise SepcheckError(
            f"architecture {name} needs images (C, H, W) but the inputs have shape {shape}: "
            "use --arch mlp for feature vectors"
        )
    try:
        return arch.factory(shape, int(n_classes))
    except ValueError as exc:
        raise SepcheckError(f"architecture {name} does not fit inputs of shape {shape} ({exc})") from None


__all__ = ["ARCHS", "Arch", "register_arch", "default_arch", "build_model", "MnistCNN",
           "WideResNet", "ResNet", "TinyCNN", "MLP"]
