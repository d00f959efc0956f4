"""Real MNIST (the official test files, skipped when absent): the 8000/2000 split, the default
architecture, and a short natural training run that learns."""

from __future__ import annotations

import pytest
import torch

from sepcheck.train import TrainConfig, train
from sepcheck.train.data import load
from sepcheck.train.evaluate import evaluate_model
from sepcheck.train.models import default_arch


@pytest.mark.slow
def test_mnist_split_and_short_training(mnist_dir, tmp_path):
    data = load(mnist_dir, holdout=2000, download=False)
    assert data.X.shape == (8000, 1, 28, 28) and data.X_test.shape == (2000, 1, 28, 28)
    assert float(data.X.min()) >= 0.0 and float(data.X.max()) <= 1.0
    assert any("first 8000" in n and "last 2000" in n for n in data.notes)
    assert default_arch(data.input_shape) == "mnist_cnn"
    data.X, data.y = data.X[:1024], data.y[:1024]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TrainConfig("natural", str(mnist_dir), eps=0.1, epochs=1, batch_size=32, optimizer="adam",
                          holdout=2000, device="cpu")
        res = train(cfg, tmp_path / "run", data=data, progress=False)
        data.X_test, data.y_test = data.X_test[:200], data.y_test[:200]
        m = evaluate_model(res.model, data, eps=0.1, norm="linf", subset=200)
    finally:
        torch.set_num_threads(n)
    assert res.config["arch"] == "mnist_cnn"
    assert m["test_acc"] > 0.7, m  # chance is 0.1
    assert m["adv_test_acc"] < m["test_acc"]
    assert m["test_lipschitz"] > 0
