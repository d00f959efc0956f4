"""Threat models and projected ascent: the inner maximisations of AT, TRADES and LLR, the PGD
evaluation attack and the Lipschitz estimate all share these few functions.

Inputs are images in [0, 1]. A threat model is a norm (``"linf"`` or ``"l2"``) and a radius
``eps``; a perturbed point stays inside ``Ball(x, eps)`` and inside the box ``[0, 1]``.

Steps are the steepest-ascent directions of the norm: the sign of the gradient for linf and
the gradient divided by its l2 norm for l2 (a zero gradient gives a random direction, as in the
reference code).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import SepcheckError

#: the threat models every method supports
THREAT_NORMS = ("linf", "l2")


def threat_norm(norm: str | float) -> str:
    """Canonical name ('linf' or 'l2') of a threat model given as linf/inf/l2/2/inf."""
    text = str(norm).strip().lower()
    if text in ("linf", "inf", "l_inf", "infinity") or (
        isinstance(norm, float) and math.isinf(norm)
    ):
        return "linf"
    if text in ("l2", "2", "2.0"):
        return "l2"
    raise SepcheckError(f"unknown threat model norm {norm!r}: use 'linf' or 'l2'")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or DataParallel) wrapper.

    Inner maximisations only need input gradients; running them on the bare module keeps
    DDP's gradient-synchronisation hooks for the one real backward pass of the loss.
    """
    return model.module if isinstance(getattr(model, "module", None), nn.Module) else model


def _per_example_norm(v: Tensor, norm: str) -> Tensor:
    flat = v.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    return flat.norm(p=2, dim=1)


def _view(t: Tensor, like: Tensor) -> Tensor:
    return t.view(-1, *([1] * (like.dim() - 1)))


def project(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Move ``x_adv`` into ``Ball(x, eps)`` and then into the box ``[0, 1]``.

    Clamping to the box after the ball never leaves the ball (x is in the box, so clamping
    only shrinks each coordinate of the perturbation), so the result is in both sets.
    """
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = _per_example_norm(delta, "l2")
        factor = torch.where(n > eps, eps / n.clamp_min(1e-12), torch.ones_like(n))
        delta = delta * _view(factor, delta)
    return (x + delta).clamp(0.0, 1.0)


def ascent_direction(grad: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction of unit norm: sign(g) for linf, g / ||g||_2 for l2."""
    if norm == "linf":
        return grad.sign()
    n = _per_example_norm(grad, "l2")
    zero = n == 0
    if bool(zero.any()):
        grad = grad.clone()
        grad[zero] = torch.randn_like(grad[zero])
        n = _per_example_norm(grad, "l2")
    return grad / _view(n, grad)


def random_start(x: Tensor, eps: float, norm: str) -> Tensor:
    """A uniform random point of ``Ball(x, eps)`` (clamped to the box): PGD's random start."""
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        d = x[0].numel()
        direction = torch.randn_like(x)
        direction = direction / _view(_per_example_norm(direction, "l2").clamp_min(1e-12), x)
        radius = eps * torch.rand(x.shape[0], device=x.device, dtype=x.dtype) ** (1.0 / d)
        delta = direction * _view(radius, x)
    return (x + delta).clamp(0.0, 1.0)


def small_start(x: Tensor, scale: float = 0.001) -> Tensor:
    """``x + scale * N(0, 1)``: the start of TRADES, LLR and the Lipschitz estimate."""
    return x + scale * torch.randn_like(x)


class _EvalMode:
    """Context: the model in eval mode (dropout off, batch-norm running statistics), or in
    train mode with ``training=True``, then back to the mode it had."""

    def __init__(self, model: nn.Module, training: bool = False) -> None:
        self.model = model
        self.was_training = model.training
        self.training = training

    def __enter__(self) -> nn.Module:
        self.model.train(self.training)
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def eval_mode(model: nn.Module) -> _EvalMode:
    """``with eval_mode(model):`` runs the block with the model in eval mode."""
    return _EvalMode(model)


def model_mode(model: nn.Module, mode: str) -> _EvalMode:
    """``with model_mode(model, "train"):`` runs the block in train mode (dropout on, batch
    statistics, as the paper's code attacks in AT); ``"eval"`` is :func:`eval_mode`."""
    if mode not in ("eval", "train"):
        raise SepcheckError(f"unknown attack mode {mode!r}: use eval or train")
    return _EvalMode(model, training=mode == "train")


def float32(x: Tensor) -> Any:
    """``with float32(x):`` runs the block with autocast off on ``x``'s device.

    Inner maximisations, finite differences and the Lipschitz estimate run inside it: under
    bf16/fp16 autocast a small step (GR's h, an attack step of 0.001) would be lost in
    rounding and fp16 input gradients underflow. Inputs must then be float32 themselves
    (:func:`as_float32`).
    """
    return torch.autocast(x.device.type, enabled=False)


def as_float32(x: Tensor) -> Tensor:
    """``x`` as float32 (low-precision floats widened; float64 kept)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def projected_ascent(
    objective: Callable[[Tensor], Tensor],
    x: Tensor,
    start: Tensor,
    *,
    eps: float,
    norm: str,
    steps: int,
    step_size: float,
    project_first: bool = False,
) -> Tensor:
    """Maximise ``objective`` over ``Ball(x, eps) ∩ [0, 1]^d`` by steepest ascent from ``start``.

    ``objective(x_adv)`` returns a scalar that is a sum of per-example terms, so each example's
    gradient is its own. Each step moves ``step_size`` along :func:`ascent_direction` and
    projects with :func:`project`. Runs in float32 with autocast off (:func:`float32`).
    Returns the last iterate, detached.
    """
    x = as_float32(x.detach())
    x_adv = as_float32(start.detach())
    if project_first:
        x_adv = project(x_adv, x, eps, norm)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad(), float32(x):
            value = objective(x_adv)
            (grad,) = torch.autograd.grad(value, [x_adv])
        x_adv = x_adv.detach() + step_size * ascent_direction(grad.detach(), norm)
        x_adv = project(x_adv, x, eps, norm)
    return x_adv.detach()


def default_step_size(eps: float, steps: int) -> float:
    """The reference code's step size: 2 eps / steps (PGD, AT, TRADES)."""
    return 2.0 * eps / max(int(steps), 1)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_init: bool = True,
    restarts: int = 1,
    mode: str = "eval",
) -> Tensor:
    """Untargeted PGD on the cross-entropy (Madry et al. 2018), run in eval mode (``mode=
    "train"``: in train mode, as the paper's code trains AT).

    With ``restarts > 1`` each example keeps the first adversarial point that fools the model
    (else the last restart's point). Returns points inside ``Ball(x, eps) ∩ [0, 1]^d``.
    """
    norm = threat_norm(norm)
    step = default_step_size(eps, steps) if step_size is None else float(step_size)
    net = unwrap(model)
    x = x.detach()
    if eps == 0:
        return x.clone()

    best = x.clone()
    undone = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    with model_mode(net, mode):
        for _ in range(max(int(restarts), 1)):
            idx = undone.nonzero().flatten()
            if idx.numel() == 0:
                break
            xs, ys = x[idx], y[idx]
            start = random_start(xs, eps, norm) if random_init else xs.clone()

            def obj(xa: Tensor, ys: Tensor = ys) -> Tensor:
                return F.cross_entropy(net(xa), ys, reduction="sum")

            adv = projected_ascent(obj, xs, start, eps=eps, norm=norm, steps=steps, step_size=step)
            best[idx] = adv
            with torch.no_grad():
                fooled = net(adv).argmax(dim=1) != ys
            undone[idx[fooled]] = False
    return best
