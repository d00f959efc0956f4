"""PGD and the projection stay inside the eps-ball and [0, 1] and raise the loss; the
Lipschitz estimate of a linear model is a lower bound within 10% of the exact maximum
(enumerated over the vertices of the eps-ball)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError
from sepcheck.train.attacks import pgd, project, random_start, threat_norm
from sepcheck.train.evaluate import (
    LipschitzSettings,
    adversarial_accuracy,
    lipschitz_estimate,
    local_lipschitz,
)
from sepcheck.train.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _norms(d: torch.Tensor, norm: str) -> torch.Tensor:
    flat = d.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), eps=st.floats(0.0, 2.0), scale=st.floats(0.0, 5.0),
       norm=st.sampled_from(["linf", "l2"]))
def test_project_lands_in_ball_and_box(seed, eps, scale, norm):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 3, 3, generator=g)
    xa = x + scale * torch.randn(4, 1, 3, 3, generator=g)
    p = project(xa, x, eps, norm)
    assert p.min() >= 0 and p.max() <= 1
    assert (_norms(p - x, norm) <= eps * (1 + 1e-5) + 1e-7).all()


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.8)])
def test_pgd_inside_ball_and_box_and_raises_loss(norm, eps, device):
    torch.manual_seed(0)
    model = build_model("tiny_cnn", (1, 6, 6), 3).to(device)
    x = torch.rand(32, 1, 6, 6).to(device)
    y = (torch.arange(32) % 3).to(device)
    adv = pgd(model, x, y, eps=eps, norm=norm, steps=10)
    assert adv.min() >= 0 and adv.max() <= 1
    assert (_norms(adv - x, norm) <= eps * (1 + 1e-5)).all()
    with torch.no_grad():
        clean, attacked = F.cross_entropy(model(x), y), F.cross_entropy(model(adv), y)
    assert attacked > clean
    start = random_start(x, eps, norm)
    assert (_norms(start - x, norm) <= eps * (1 + 1e-5)).all()
    # more restarts never help the defender
    a1 = adversarial_accuracy(model, x, y, eps=eps, norm=norm, device=device)
    assert 0.0 <= a1 <= 1.0
    assert threat_norm("inf") == "linf" and threat_norm(2) == "l2"
    with pytest.raises(SepcheckError, match="linf' or 'l2"):
        threat_norm("l1")


def _linear(d: int, m: int, seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(d, m)
    return lin


def _exact_linf(W: torch.Tensor) -> float:
    """max over the vertices x + eps s of ||W (eps s)||_1 / ||eps s||_inf = max_s ||W s||_1."""
    d = W.shape[1]
    return max(float((W @ torch.tensor(s, dtype=torch.float64)).abs().sum())
               for s in itertools.product((-1.0, 1.0), repeat=d))


def _exact_l2(W: torch.Tensor) -> float:
    """max_{||v||_2 = 1} ||W v||_1 = max over output signs s of ||W^T s||_2 (duality)."""
    m = W.shape[0]
    return max(float((W.T @ torch.tensor(s, dtype=torch.float64)).norm())
               for s in itertools.product((-1.0, 1.0), repeat=m))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("norm,d,m", [("linf", 3, 2), ("linf", 6, 4), ("linf", 10, 3), ("l2", 8, 3), ("l2", 10, 5)])
def test_lipschitz_estimate_of_linear_model(seed, norm, d, m):
    lin = _linear(d, m, seed)
    W = lin.weight.detach().double()
    exact = _exact_linf(W) if norm == "linf" else _exact_l2(W)
    torch.manual_seed(seed + 100)
    x = 0.3 + 0.4 * torch.rand(16, d)  # inside the box; the eps-ball fits
    # the paper's estimator (one start): a lower bound at every point
    one = local_lipschitz(lin, x, eps=0.1, norm=norm)
    assert (one <= exact * (1 + 1e-5)).all()
    # the returned value (mean over the points) with a few starts: within 10% of the maximum
    value = lipschitz_estimate(lin, x, eps=0.1, norm=norm, batch_size=5,
                               settings=LipschitzSettings(restarts=8))
    assert 0.9 * exact <= value <= exact * (1 + 1e-5), (value, exact)
