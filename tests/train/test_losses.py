"""The five losses on a tiny model and batch: finite, differentiable, gradients reach every
parameter, cross-entropy at beta = 0 / lambda = 0 / eps = 0, and bad parameters rejected."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sepcheck import SepcheckError
from sepcheck.train.losses import METHODS, get_loss, method_label, method_params
from sepcheck.train.models import build_model

EPS = 0.1


pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(seed: int = 0, device: str = "cpu"):
    torch.manual_seed(seed)
    model = build_model("tiny_cnn", (1, 6, 6), 3).to(device)
    x = torch.rand(8, 1, 6, 6).to(device)
    y = (torch.arange(8) % 3).to(device)
    return model, x, y


def _kwargs(method: str, norm: str) -> dict:
    kw = {"norm": norm} if "norm" in method_params(method) else {}
    if "eps" in method_params(method):
        kw["eps"] = EPS if norm == "linf" else 0.5
    if "steps" in method_params(method):
        kw["steps"] = 3
    return kw


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("method", list(METHODS))
def test_loss_finite_and_reaches_every_parameter(method, norm, device):
    model, x, y = _setup(device=device)
    model.train()
    loss, logits = get_loss(method)(model, x, y, **_kwargs(method, norm))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert loss.requires_grad
    assert logits.shape == (8, 3)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{method}: no gradient for {name}"
        assert torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0, f"{method}: zero gradient for {name}"
    assert model.training, "the loss must leave the model in the mode it found it in"


@pytest.mark.parametrize(
    "method,params",
    [("trades", {"beta": 0.0, "eps": EPS}), ("gr", {"lam": 0.0}), ("llr", {"lam": 0.0, "mu": 0.0, "eps": EPS}),
     ("at", {"eps": 0.0})],
)
def test_reduces_to_cross_entropy(method, params):
    model, x, y = _setup(1)
    ce = F.cross_entropy(model(x), y)
    ce.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss, _ = get_loss(method)(model, x, y, **params)
    assert torch.allclose(loss, ce, atol=1e-6)
    loss.backward()
    for g, r in zip((p.grad for p in model.parameters()), ref, strict=True):
        assert torch.allclose(g, r, atol=1e-6)


def test_regularisers_add_to_cross_entropy():
    model, x, y = _setup(2)
    ce = F.cross_entropy(model(x), y).item()
    for method, kw in [("trades", {"beta": 6.0, "eps": 0.3}), ("gr", {"lam": 10.0}), ("llr", {"eps": 0.3})]:
        torch.manual_seed(0)
        loss, _ = get_loss(method)(model, x, y, **kw)
        assert loss.item() > ce, method


@pytest.mark.parametrize(
    "method,params,flag",
    [("trades", {"beta": -1.0, "eps": EPS}, "beta"), ("gr", {"lam": -0.5}, "lambda"),
     ("llr", {"lam": -1.0, "eps": EPS}, "lambda"), ("at", {"eps": -0.1}, "eps"), ("trades", {"eps": -0.1}, "eps")],
)
def test_negative_parameters_rejected(method, params, flag):
    model, x, y = _setup()
    with pytest.raises(SepcheckError, match=flag):
        get_loss(method)(model, x, y, **params)


def test_registry_helpers():
    with pytest.raises(SepcheckError, match="unknown method 'fgsm'.*natural, gr, llr, at, trades"):
        get_loss("fgsm")
    assert method_label("trades", {"beta": 6.0}) == "TRADES(β=6)"
    assert method_label("natural") == "Natural"
