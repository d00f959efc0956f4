"""LLR: local linearity regularisation (Qin et al. 2019, "Adversarial robustness through local
linearization")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.errors import SepcheckError
from ..attacks import (
    as_float32,
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
    lam: float = 4.0,
    mu: float = 3.0,
    norm: str = "linf",
    steps: int = 2,
    step_size: float | None = None,
    variant: str = "published",
) -> tuple[Tensor, Tensor]:
    """``CE(x) + lam * gamma + mu * |delta^T grad l(x)|`` with
    ``gamma = |l(x + delta) - l(x) - delta^T grad l(x)|`` (per example, averaged).

    ``delta`` maximises gamma over the eps-ball by ``steps`` ascent steps of ``step_size``
    (defaults 2 steps of eps/2, the paper's code) from a 0.001 N(0, 1) start, in eval mode.
    In the loss the input gradient is differentiated (double back-propagation), as in Qin et
    al. The cross-entropy uses the model in its current (training) mode; gamma and the
    gradient term use it in eval mode: with dropout, two forward passes draw two masks and
    l(x + delta) - l(x) is mostly their difference, which a network removes by becoming
    constant (the paper's MNIST CNN collapses to 10% accuracy). ``lam = mu = 0`` is plain
    cross-entropy. Returns ``(loss, clean logits in training mode)``.

    ``variant="paper-code"`` reproduces the loss of the paper's code (``lolip/.../llr.py``),
    which differs from Qin et al.: there the input gradient is read through an alias of
    ``x.grad`` that is then zeroed, so the gradient term is 0, gamma reduces to
    ``CE(x + delta)`` and the loss to ``CE(x) + lam * CE(x + delta)`` (``mu`` has no effect).
    ``delta`` starts at 0.001 N(0, 1) and takes ``steps`` steps of ``step_size`` along
    ``g / ||g||_p`` (p the threat norm; a zero gradient gives a random direction) of
    ``CE(x + delta)`` in eval mode, each followed by ``x + delta`` clamped to [0, 1] and
    ``delta`` rescaled to norm at most eps (``renorm``, not a coordinate clamp); both loss
    terms then use the model in training mode.
    """
    if lam < 0 or mu < 0:
        raise SepcheckError(f"lambda={lam}, mu={mu} are invalid for llr: give weights >= 0")
    if eps < 0:
        raise SepcheckError(f"eps={eps} is invalid for llr: give an attack radius >= 0")
    norm = threat_norm(norm)
    step = eps / 2.0 if step_size is None else float(step_size)
    net = unwrap(model)
    x = x.detach()
    if variant not in ("published", "paper-code"):
        raise SepcheckError(f"unknown llr variant {variant!r}: use published or paper-code")
    if variant == "paper-code":
        return _paper_code(model, net, x, y, eps=eps, lam=lam, norm=norm, steps=steps, step=step)
    if lam == 0 and mu == 0:
        logits = model(x)
        return F.cross_entropy(logits, y), logits

    with eval_mode(net), float32(x):  # the inner maximisation: float32, autocast off
        x0 = as_float32(x).clone().requires_grad_(True)
        l0 = F.cross_entropy(net(x0), y, reduction="none")
        (g0,) = torch.autograd.grad(l0.sum(), [x0])
        l0, g0 = l0.detach(), g0.detach()

        def gamma(x_adv: Tensor) -> Tensor:
            lin = ((x_adv - x0.detach()) * g0).flatten(1).sum(dim=1)
            return (F.cross_entropy(net(x_adv), y, reduction="none") - l0 - lin).abs().sum()

        x_adv = projected_ascent(
            gamma, x0.detach(), small_start(x0.detach()), eps=eps, norm=norm, steps=steps, step_size=step,
            project_first=True,
        )
    delta = (x_adv - x0).detach()
    logits = model(x)
    ce = F.cross_entropy(logits, y)
    # the regulariser sees the deterministic network (no dropout); its finite difference
    # l(x + delta) - l(x) - delta^T grad runs in float32 with autocast off
    with eval_mode(model), float32(x):
        xg = as_float32(x).clone().requires_grad_(True)
        lx = F.cross_entropy(model(xg), y, reduction="none")
        (g,) = torch.autograd.grad(lx.sum(), [xg], create_graph=True)
        lin = (delta * g).flatten(1).sum(dim=1)
        l_adv = F.cross_entropy(model(xg.detach() + delta), y, reduction="none")
    gam = (l_adv - lx - lin).abs()
    return ce + lam * gam.mean() + mu * lin.abs().mean(), logits


def _paper_code(model: nn.Module, net: nn.Module, x: Tensor, y: Tensor, *, eps: float, lam: float, norm: str,
                steps: int, step: float) -> tuple[Tensor, Tensor]:
    """The paper's code's LLR (see :func:`loss`): ``CE(x) + lam * CE(x + delta)``."""
    p = float("inf") if norm == "linf" else 2.0
    with eval_mode(net), float32(x):
        x0 = as_float32(x)
        delta = small_start(torch.zeros_like(x0))
        for _ in range(steps):
            delta.requires_grad_(True)
            with torch.enable_grad():
                obj = F.cross_entropy(net(x0 + delta), y, reduction="sum")
                (g,) = torch.autograd.grad(obj, [delta])
            n = g.flatten(1).norm(p=p, dim=1)
            zero = n == 0
            g = g / n.view(-1, *([1] * (g.dim() - 1)))
            if bool(zero.any()):
                g[zero] = torch.randn_like(g[zero])
            delta = delta.detach() + step * g
            delta = (x0 + delta).clamp(0.0, 1.0) - x0
            dn = delta.flatten(1).norm(p=p, dim=1)
            scale = torch.where(dn > eps, eps / (dn + 1e-7), torch.ones_like(dn))  # torch.renorm's rule
            delta = delta * scale.view(-1, *([1] * (delta.dim() - 1)))
    logits = model(x)
    return F.cross_entropy(logits, y) + lam * F.cross_entropy(model(x + delta.detach()), y), logits
