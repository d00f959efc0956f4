"""The five training methods, one loss function each: ``loss(model, x, y, **params) ->
(loss, logits)``.

=========  ===========================================================  ===================
method     loss                                                         parameters
=========  ===========================================================  ===================
natural    cross-entropy                                                -
gr         CE + lam/2 (finite-difference directional derivative / h)^2  lam=1, h=1
llr        CE + lam gamma + mu |delta^T grad l|  (Qin et al. 2019)       eps, lam=4, mu=3, norm, steps=2, step_size=eps/2
at         CE on PGD adversarial examples (Madry et al. 2018)           eps, norm, steps=10, step_size=2 eps/steps
trades     CE + beta KL(f(x) || f(x'))  (Zhang et al. 2019)             eps, beta=1, norm, steps=10, step_size=2 eps/steps
=========  ===========================================================  ===================

A run's parameters are typed and validated in :mod:`sepcheck.train.config` (one dataclass
per method); the loss functions check their own arguments too, for direct calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ...core.errors import SepcheckError
from . import at, gr, llr, natural, trades

LossFn = Callable[..., Any]

#: method name -> loss function
METHODS: dict[str, LossFn] = {
    "natural": natural.loss,
    "gr": gr.loss,
    "llr": llr.loss,
    "at": at.loss,
    "trades": trades.loss,
}


def get_loss(method: str) -> LossFn:
    """The loss function of a method (natural, gr, llr, at, trades)."""
    key = str(method).strip().lower()
    if key not in METHODS:
        raise SepcheckError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    return METHODS[key]


def method_params(method: str) -> dict[str, Any]:
    """The parameters a method's loss takes, with their defaults (``inspect.Parameter.empty``
    when required)."""
    sig = inspect.signature(get_loss(method))
    return {name: p.default for name, p in sig.parameters.items() if name not in ("model", "x", "y")}


def method_label(method: str, params: dict[str, Any] | None = None) -> str:
    """Row label as in the paper's table: Natural, GR, LLR, AT, TRADES(β=6)."""
    key = str(method).lower()
    base = {"natural": "Natural", "gr": "GR", "llr": "LLR", "at": "AT", "trades": "TRADES"}.get(key, key)
    if key == "trades":
        beta = (params or {}).get("beta")
        beta = 1.0 if beta is None else float(beta)
        return f"TRADES(β={beta:g})"
    if (params or {}).get("variant") == "paper-code":
        return f"{base} (paper code)"
    if (params or {}).get("attack_mode") == "train":
        return f"{base} (train-mode attack)"
    return base


__all__ = ["METHODS", "get_loss", "method_params", "method_label", "natural", "gr", "llr", "at", "trades"]
