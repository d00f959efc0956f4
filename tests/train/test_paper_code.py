"""The paper-code protocols against transcriptions of the official code
(yangarbiter/robust-local-lipschitz): the Lipschitz estimate (lolip/utils.py,
estimate_local_lip_v2), the LLR loss (lolip/models/torch_utils/llr.py) and the GR loss
(lolip/models/torch_utils/tulip.py), on fixed tiny models with the same start and steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn, optim

from sepcheck.train.evaluate import lipschitz_estimate, local_lipschitz, local_lipschitz_paper_code
from sepcheck.train.losses import get_loss


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).double()


def _x(n: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=torch.float64)


# ---- transcriptions (numpy/DataLoader/cuda plumbing removed; arithmetic as written) --------
def official_local_lip(model, x, xp, top_norm, btm_norm, reduction="mean"):
    model.eval()
    down = torch.flatten(x - xp, start_dim=1)
    top = torch.flatten(model(x), start_dim=1) - torch.flatten(model(xp), start_dim=1)
    ret = torch.norm(top, dim=1, p=top_norm) / torch.norm(down + 1e-6, dim=1, p=btm_norm)
    return torch.mean(ret) if reduction == "mean" else torch.sum(ret)


def official_estimate_local_lip_v2(model, x, top_norm, btm_norm, perturb_steps=10, step_size=0.003,
                                   epsilon=0.01):
    model.eval()
    x_adv = x + 0.001 * torch.randn(x.shape, dtype=x.dtype)
    for _ in range(perturb_steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            loss = (-1) * official_local_lip(model, x, x_adv, top_norm, btm_norm)
        loss.backward()
        eta = step_size * x_adv.grad.data.sign().detach()
        x_adv = x_adv.data.detach() + eta.detach()
        eta = torch.clamp(x_adv.data - x.data, -epsilon, epsilon)
        x_adv = x.data.detach() + eta.detach()
        x_adv = torch.clamp(x_adv, 0, 1.0)
    return official_local_lip(model, x, x_adv, top_norm, btm_norm, reduction="sum").item() / len(x)


def official_llr(model, loss_fn, x, y, norm, optimizer, step_size, epsilon, perturb_steps, lambd, mu):
    model.eval()
    batch_size = len(x)

    def model_grad(x):
        x.requires_grad_(True)
        lx = loss_fn(model(x), y)
        lx.backward()
        ret = x.grad
        x.grad.zero_()
        x.requires_grad_(False)
        return ret

    def grad_dot(x, delta, model_grad):
        ret = torch.matmul(model_grad.flatten(start_dim=1), delta.flatten(start_dim=1).T)
        return torch.mean(ret)

    def g(x, delta, model_grad):
        return torch.abs(loss_fn(model(x + delta), y) - grad_dot(x, delta, model_grad))

    mg = model_grad(x)
    delta = 0.001 * torch.randn(x.shape, dtype=x.dtype).detach()
    delta = torch.autograd.Variable(delta.data, requires_grad=True)
    optimizer_delta = optim.SGD([delta], lr=step_size)
    for _ in range(perturb_steps):
        optimizer_delta.zero_grad()
        loss = (-1) * g(x, delta, mg)
        loss.backward()
        grad_norms = delta.grad.view(batch_size, -1).norm(p=norm, dim=1)
        delta.grad.div_(grad_norms.view(-1, 1, 1, 1))
        if (grad_norms == 0).any():
            delta.grad[grad_norms == 0] = torch.randn_like(delta.grad[grad_norms == 0])
        optimizer_delta.step()
        delta.data.add_(x)
        delta.data.clamp_(0, 1).sub_(x)
        delta.data.renorm_(p=norm, dim=0, maxnorm=epsilon)
    delta.requires_grad_(False)
    model.train()
    optimizer.zero_grad()
    outputs = model(x)
    return loss_fn(outputs, y) + lambd * g(x, delta, mg) + mu * grad_dot(x, delta, mg)


def official_tulip(model_fn, loss_fn, x, y, step_size=1.0, lambd=1.0):
    x.requires_grad_(True)
    outputs = model_fn(x)
    lx = loss_fn(outputs, y)
    loss = lx.sum()
    loss.backward(retain_graph=True)
    dx = x.grad.data
    sh = dx.shape
    x.requires_grad_(False)
    v = dx.view(sh[0], -1)
    nv = v.norm(2, dim=-1, keepdim=True)
    nz = nv.view(-1) > 0
    v[nz] = v[nz].div(nv[nz])
    v = v.view(sh)
    xf = x + step_size * v
    lf = loss_fn(model_fn(xf), y)
    dl = (lf - lx) / step_size
    return loss + lambd * dl.pow(2).sum() / 2


def _grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


# ---- the tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_paper_code_estimate_matches_the_official_function(seed):
    model, x = _model(seed), _x(seed=seed + 3)
    torch.manual_seed(seed)
    official = official_estimate_local_lip_v2(model, x, 1, float("inf"), epsilon=0.05)
    torch.manual_seed(seed)
    ours = lipschitz_estimate(model, x, eps=0.05, norm="linf", protocol="paper-code", batch_size=len(x))
    assert ours == pytest.approx(official, rel=1e-9)
    # the two protocols differ: the official descends, ascent keeps its best iterate
    torch.manual_seed(seed)
    assert local_lipschitz(model, x, eps=0.05).mean() > local_lipschitz_paper_code(model, x, eps=0.05).mean()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_paper_code_llr_matches_the_official_loss(norm):
    model, x = _model(2), _x(seed=5)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    p = float("inf") if norm == "linf" else 2
    eps = 0.1 if norm == "linf" else 0.5
    model.train()
    torch.manual_seed(7)
    official = official_llr(model, nn.CrossEntropyLoss(reduction="sum"), x.clone(), y, p,
                            optim.SGD(model.parameters(), lr=0.1), eps / 2, eps, 2, 4.0, 3.0)
    model.zero_grad()
    official.backward()
    g_official = _grads(model)
    model.zero_grad()
    torch.manual_seed(7)
    ours, _ = get_loss("llr")(model, x, y, eps=eps, norm=norm, variant="paper-code")
    (ours * len(x)).backward()  # the official code sums over the batch; ours is the mean
    assert float(ours.detach()) * len(x) == pytest.approx(float(official.detach()), rel=1e-9)
    torch.testing.assert_close(_grads(model), g_official, rtol=1e-7, atol=1e-10)


def test_paper_code_gr_matches_the_official_gradient():
    model, x = _model(3), _x(seed=6)
    y = torch.tensor([2, 1, 0, 0, 1, 2])
    model.train()
    model.zero_grad()
    loss = official_tulip(model, nn.CrossEntropyLoss(reduction="none"), x.clone(), y, 1.0, 0.5)
    loss.backward()  # the training loop's backward, on top of the one inside tulip_loss
    g_official = _grads(model)
    model.zero_grad()
    ours, _ = get_loss("gr")(model, x, y, lam=0.5, h=1.0, variant="paper-code")
    (ours * len(x)).backward()
    torch.testing.assert_close(_grads(model), g_official, rtol=1e-7, atol=1e-10)
    # the published GR weighs the cross-entropy once
    model.zero_grad()
    pub, _ = get_loss("gr")(model, x, y, lam=0.5, h=1.0)
    with torch.no_grad():
        assert float(ours) - float(pub) == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-9)


def test_paper_preset_round_trips_and_flags_override(tmp_path):
    from sepcheck.train import train
    from sepcheck.train.config import TrainConfig, official_milestones
    from sepcheck.train.runs import RunDir, read_config

    from .tiny import tiny_data

    data = tiny_data(n=24)  # 1x8x8 images named "stripes": no preset fits that shape
    cfg = TrainConfig.from_options("llr", "stripes", preset="paper", variant="paper-code", epochs=1, eps=0.1,
                                   explicit=("epochs",), arch="tiny_cnn", device="cpu")
    cfg.validate()
    with pytest.raises(Exception, match="no paper preset"):
        train(cfg, tmp_path / "bad", data=data, progress=False)
    data.name = "my-mnist-copy"  # the name picks the preset: mnist
    cfg = TrainConfig.from_options("llr", "stripes", preset="paper", variant="paper-code", epochs=1, eps=0.1,
                                   explicit=("epochs", "arch"), arch="tiny_cnn", device="cpu")
    cfg.validate()
    train(cfg, tmp_path / "run", data=data, progress=False)
    stored = read_config(RunDir(tmp_path / "run"))
    assert stored["preset"]["dataset"] == "mnist" and stored["preset"]["overridden"] == ["arch", "epochs"]
    assert (stored["optimizer"], stored["lr"], stored["momentum"], stored["batch_size"], stored["reduction"]) == (
        "sgd", 1e-4, 0.9, 64, "sum")
    assert stored["epochs"] == 1 and stored["arch"] == "tiny_cnn"
    assert stored["milestones"] == official_milestones(1) and stored["params"]["variant"] == "paper-code"
    back = TrainConfig.from_json(stored)
    back.validate()
    assert (back.lr, back.reduction, list(back.milestones), back.params) == (1e-4, "sum", stored["milestones"],
                                                                               cfg.params)
