"""AT: PGD adversarial training (Madry et al. 2018)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ...core.errors import SepcheckError
from ..attacks import pgd


def loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    attack_mode: str = "eval",
) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the PGD adversarial examples: random start in the eps-ball, ``steps``
    steps of ``step_size`` (default 2 eps / steps, the reference code's), each projected onto
    the eps-ball and [0, 1]; the attack runs in eval mode (``attack_mode="train"``: in train
    mode, dropout on and batch statistics, as the paper's code does). ``eps = 0`` is plain
    cross-entropy.
    Returns ``(loss, logits of the adversarial inputs)``.
    """
    if eps < 0:
        raise SepcheckError(f"eps={eps} is invalid for at: give an attack radius >= 0")
    x_adv = pgd(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size, mode=attack_mode)
    logits = model(x_adv)
    return F.cross_entropy(logits, y), logits
