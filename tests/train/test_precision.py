"""Under autocast (bfloat16 on the CPU here, bf16/fp16 on CUDA) the inner maximisations, the GR
finite difference and the Lipschitz estimate still compute in float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sepcheck.train.attacks import pgd, projected_ascent, small_start
from sepcheck.train.evaluate import local_lipschitz
from sepcheck.train.losses import get_loss
from sepcheck.train.models import build_model


def _setup():
    torch.manual_seed(0)
    model = build_model("tiny_cnn", (1, 6, 6), 3)
    return model, torch.rand(8, 1, 6, 6), torch.arange(8) % 3


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_inner_maximisation_sees_float32_under_autocast():
    model, x, y = _setup()
    seen = []

    def objective(xa):
        out = model(xa)
        seen.append((xa.dtype, out.dtype))
        return F.cross_entropy(out, y, reduction="sum")

    with _bf16():
        assert model(x).dtype == torch.bfloat16  # autocast is really on outside
        projected_ascent(objective, x, small_start(x), eps=0.1, norm="linf", steps=2, step_size=0.05)
    assert seen and all(s == (torch.float32, torch.float32) for s in seen)


def test_attacks_and_finite_differences_unchanged_by_autocast():
    model, x, y = _setup()
    for fn in (lambda: pgd(model, x, y, eps=0.1, steps=3),
               lambda: get_loss("gr")(model, x, y, lam=1.0, h=0.001)[0],
               lambda: local_lipschitz(model, x, eps=0.1, steps=3)):
        torch.manual_seed(1)
        plain = fn()
        torch.manual_seed(1)
        with _bf16():
            mixed = fn()
        assert mixed.dtype == torch.float32 and torch.equal(plain, mixed)
