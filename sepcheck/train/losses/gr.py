"""GR: input-gradient regularisation by finite differences (Finlay & Oberman 2019, "Scaleable
input gradient regularization for adversarial robustness"; the paper's TULIP baseline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.errors import SepcheckError
from ..attacks import as_float32, ascent_direction, float32


def loss(model: nn.Module, x: Tensor, y: Tensor, *, lam: float = 1.0, h: float = 1.0,
         variant: str = "published") -> tuple[Tensor, Tensor]:
    """``CE(x) + lam/2 * mean(((l(x + h d) - l(x)) / h)^2)`` with ``d = g / ||g||_2`` the
    normalised input gradient of the loss, held fixed: the penalty estimates ``||g||_2^2``
    per example, and both loss terms of the difference are differentiated. As in the paper's
    code the direction is the l2-normalised gradient whatever the threat model (which enters
    only through the evaluation), and the default step is that code's ``h = 1`` (a smaller h
    approaches the exact gradient-norm penalty and needs a much smaller lam: on MNIST,
    lam = 1 with h = 0.01 collapses the network to a constant). ``lam = 0`` is plain
    cross-entropy. The whole loss runs in float32 with autocast off: in bf16 the difference
    quotient would be rounding noise. Returns ``(loss, clean logits)``.

    ``variant="paper-code"`` reproduces the paper's code (``tulip_loss``): it back-propagates
    the cross-entropy once inside the loss (to get the direction) and once more with the
    penalty, so the parameters get ``2 grad CE + lam grad penalty``: the loss returned is
    ``2 CE(x) + lam/2 * mean(dl^2)`` (the two terms' weights otherwise as published).
    """
    if lam < 0:
        raise SepcheckError(f"lambda={lam} is invalid for gr: give a penalty weight >= 0")
    if variant not in ("published", "paper-code"):
        raise SepcheckError(f"unknown gr variant {variant!r}: use published or paper-code")
    if not h > 0:
        raise SepcheckError(f"h={h} is invalid for gr: give a finite-difference step > 0")
    x = as_float32(x.detach()).requires_grad_(True)
    with float32(x):
        logits = model(x)
        lx = F.cross_entropy(logits, y, reduction="none")
        ce_weight = 2.0 if variant == "paper-code" else 1.0
        if lam == 0:
            return ce_weight * lx.mean(), logits
        (grad,) = torch.autograd.grad(lx.sum(), [x], retain_graph=True)
        d = ascent_direction(grad.detach(), "l2")
        lf = F.cross_entropy(model(x.detach() + h * d), y, reduction="none")
        dl = (lf - lx) / h
        return ce_weight * lx.mean() + 0.5 * lam * dl.pow(2).mean(), logits
