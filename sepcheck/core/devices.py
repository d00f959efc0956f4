"""Device names: the one place that turns 'auto' / 'cpu' / 'cuda' / 'cuda:N' into a device.

Every layer (engine, classifier, training) resolves devices here, so the rules are the same
everywhere: 'auto' is CUDA when torch sees a GPU, else the CPU; 'cuda' on a machine without
one is a one-line error naming the fix; under ``torchrun`` a plain 'cuda' means the GPU of
this process's ``LOCAL_RANK``.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import SepcheckError

#: device names the API and the CLI accept (plus 'cuda:N')
DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU (imports torch lazily)."""
    import torch

    return bool(torch.cuda.is_available())


def env_local_rank() -> int | None:
    """``LOCAL_RANK`` set by torchrun, or None."""
    text = os.environ.get("LOCAL_RANK")
    if text is None or not text.strip().isdigit():
        return None
    return int(text)


def check_device_name(device: Any) -> str:
    """``device`` lower-cased when it names one: 'auto', 'cpu', 'cuda' or 'cuda:N' (whether
    it exists is :func:`resolve_device`'s question); otherwise a one-line error."""
    text = str(device).strip().lower()
    if text in DEVICES or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise SepcheckError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_device(device: str, local_rank: int | None = None) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cpu'; 'cuda' / 'cuda:N'.

    A plain 'cuda' (also from 'auto') becomes 'cuda:<local_rank>' when ``local_rank`` is
    given or ``LOCAL_RANK`` is set (one GPU per process under torchrun).
    """
    text = check_device_name(device)
    if text == "auto":
        text = "cuda" if cuda_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not cuda_available():
            raise SepcheckError(
                f"device {device!r} asked for but torch sees no CUDA GPU: use device 'cpu' "
                "(--device cpu), or install a CUDA build of torch (README, 'GPU')"
            )
        if text == "cuda":
            rank = local_rank if local_rank is not None else env_local_rank()
            return f"cuda:{rank}" if rank is not None else "cuda"
        return text
    raise SepcheckError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def torch_device(device: str, local_rank: int | None = None):
    """:func:`resolve_device` as a ``torch.device``."""
    import torch

    return torch.device(resolve_device(device, local_rank))


__all__ = ["DEVICES", "cuda_available", "env_local_rank", "resolve_device", "torch_device"]
