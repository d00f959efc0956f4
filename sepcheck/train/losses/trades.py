"""TRADES (Zhang et al. 2019), after the reference ``trades_loss`` of yaodongyu/TRADES."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ...core.errors import SepcheckError
from ..attacks import (
    as_float32,
    default_step_size,
    eval_mode,
    float32,
    projected_ascent,
    small_start,
    threat_norm,
    unwrap,
)


def loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    beta: float = 1.0,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x'))`` (KL averaged over the batch).

    ``x'`` starts at ``x + 0.001 N(0, 1)`` and takes ``steps`` ascent steps of ``step_size``
    (default 2 eps / steps, the paper's code) on the KL with the model in eval mode, each
    projected onto the eps-ball and [0, 1]; then the model goes back to its mode and the loss
    is computed. ``beta = 0`` is plain cross-entropy. Returns ``(loss, clean logits)``.
    """
    if beta < 0:
        raise SepcheckError(f"beta={beta} is invalid for trades: give a weight >= 0")
    if eps < 0:
        raise SepcheckError(f"eps={eps} is invalid for trades: give an attack radius >= 0")
    norm = threat_norm(norm)
    step = default_step_size(eps, steps) if step_size is None else float(step_size)
    net = unwrap(model)
    x = x.detach()
    if beta == 0:
        logits = model(x)
        return F.cross_entropy(logits, y), logits
    with eval_mode(net), float32(x):  # the inner maximisation: float32, autocast off
        p_nat = F.softmax(net(as_float32(x)), dim=1).detach()

        def kl(x_adv: Tensor) -> Tensor:
            return F.kl_div(F.log_softmax(net(x_adv), dim=1), p_nat, reduction="sum")

        x_adv = projected_ascent(
            kl, x, small_start(x), eps=eps, norm=norm, steps=steps, step_size=step,
            project_first=True,
        )
    logits = model(x)
    robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * robust, logits
