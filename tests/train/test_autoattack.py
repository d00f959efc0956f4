"""AutoAttack (ART) end to end on a tiny model, next to PGD on the same points."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sepcheck.core.errors import SepcheckError
from sepcheck.train.autoattack import AutoAttackSettings, autoattack_robust, require_art
from sepcheck.train.evaluate import adversarial_accuracy

from .tiny import tiny_data


@pytest.fixture(scope="module")
def trained():
    try:
        require_art()
    except SepcheckError as exc:
        pytest.skip(str(exc))
    data = tiny_data(n=48)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(data.X), data.y).backward()
        opt.step()
    return model.eval(), data


def test_autoattack_never_above_pgd(trained):
    model, data = trained
    X, y = data.X_test, data.y_test
    eps = 0.1
    s = AutoAttackSettings(apgd_iter=10, square_queries=20)
    robust = autoattack_robust(model, X, y, eps=eps, settings=s)
    assert robust.shape == (X.shape[0],) and robust.dtype == bool
    with torch.no_grad():
        clean = (model(X).argmax(1) == y).numpy()
    assert not (robust & ~clean).any()  # a misclassified point is never robust
    torch.manual_seed(0)
    pgd_acc = adversarial_accuracy(model, X, y, eps=eps)
    assert robust.mean() <= pgd_acc


def test_autoattack_error_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_art(name, *args, **kwargs):
        if name.startswith("art"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_art)
    with pytest.raises(SepcheckError, match=r"sepcheck\[autoattack\]"):
        require_art()
