"""Falsification: a strong PGD attack (linf and l2, many steps, random restarts) against the
torch forward of LipschitzNNClassifier never changes the prediction of a point whose
certified radius exceeds the attack radius, and does succeed on points with a small radius
(so the attack has teeth). Adversarial points are judged by the exact engine."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sepcheck.classifier import LipschitzNNClassifier


def pgd(module, x0: torch.Tensor, pred: np.ndarray, eps: float, norm: str, *, steps: int = 60,
        restarts: int = 4, seed: int = 0) -> list[torch.Tensor]:
    """Maximise the margin max_{j != pred} f_j - f_pred inside the eps-ball around x0.
    Returns the final iterate of every restart (each inside the ball)."""
    gen = torch.Generator().manual_seed(seed)
    cols = torch.from_numpy(np.searchsorted(module.classes, pred))
    n, d = x0.shape
    step = 2.5 * eps / steps
    outs = []
    for _ in range(restarts):
        if norm == "linf":
            x = x0 + (torch.rand(n, d, generator=gen, dtype=x0.dtype) * 2 - 1) * eps
        else:
            u = torch.randn(n, d, generator=gen, dtype=x0.dtype)
            u = u / u.norm(dim=1, keepdim=True)
            x = x0 + u * eps * torch.rand(n, 1, generator=gen, dtype=x0.dtype) ** (1 / d)
        best = x.clone()
        best_m = torch.full((n,), -math.inf, dtype=x0.dtype)
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            s = module(x)
            own = s.gather(1, cols[:, None])[:, 0]
            other = s.scatter(1, cols[:, None], -math.inf).max(dim=1).values
            margin = other - own
            (g,) = torch.autograd.grad(margin.sum(), x)
            with torch.no_grad():
                better = margin > best_m
                best[better] = x[better]
                best_m = torch.where(better, margin, best_m)
                if norm == "linf":
                    x = x + step * g.sign()
                    x = x0 + (x - x0).clamp(-eps, eps)
                else:
                    x = x + step * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
                    delta = x - x0
                    scale = (eps / delta.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
                    x = x0 + delta * scale
        outs += [x.detach(), best]
    return outs


pytestmark = pytest.mark.usefixtures("one_thread")


def _clusters(seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, 10)) * 1.2
    y = rng.integers(0, 4, 400)
    X = centers[y] + rng.normal(size=(400, 10)) * 0.5
    yt = rng.integers(0, 4, 150)
    Xt = centers[yt] + rng.normal(size=(150, 10)) * 0.5
    return X, y, Xt, yt


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_never_breaks_a_certificate(norm, device):
    X, y, Xt, yt = _clusters()
    clf = LipschitzNNClassifier(device=device, norm=norm).fit(X, y)
    module = clf.as_torch_module(device=device)
    pred = clf.predict(Xt)
    radius = clf.certified_radius(Xt)
    p = math.inf if norm == "linf" else 2.0
    eps = float(np.median(radius))  # half the points certified, half not
    safe = radius > eps * (1 + 1e-9)
    weak = radius < eps
    assert safe.sum() > 30 and weak.sum() > 30
    x0 = torch.from_numpy(Xt)
    broken = np.zeros(len(Xt), dtype=bool)
    for x_adv in pgd(module, x0, pred, eps, norm):
        dist = torch.linalg.vector_norm(x_adv - x0, ord=p, dim=1).numpy()
        assert np.all(dist <= eps * (1 + 1e-12))
        broken |= clf.predict(x_adv.numpy()) != pred  # judged by the exact engine
    assert not np.any(broken & safe), "PGD changed a prediction inside the certified radius"
    # teeth: the attack flips a share of the uncertified points (not all: the certified
    # radius is only a lower bound on the distance to the boundary)
    assert broken[weak].sum() >= 10


def test_pgd_on_the_spiral_at_r(device):
    """On the spiral, eps = r/2: every test point within r/2 of its own class is certified
    at r/2 by the theorem; none of the certified points can be flipped."""
    from sepcheck.datasets import make_spiral

    X, y = make_spiral("train")
    Xt, yt = make_spiral("test")
    clf = LipschitzNNClassifier(device=device, norm="l2").fit(X, y)
    eps = clf.r_ / 2
    res = clf.certify(Xt, yt, eps)
    near = res.d_true <= eps
    assert np.all(res.radius[near] >= clf.r_ - res.d_true[near] - 1e-12)  # r - d_own bound
    module = clf.as_torch_module(device=device)
    x0 = torch.from_numpy(Xt)
    safe = res.radius > eps
    for x_adv in pgd(module, x0, res.predictions, eps, "l2", steps=40, restarts=2):
        flipped = clf.predict(x_adv.numpy()) != res.predictions
        assert not np.any(flipped & safe)
