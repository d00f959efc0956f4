"""The trainer: a few steps lower each method's loss, the run folder, exact resume after an
interruption, refusal to overwrite, and the models registry."""

from __future__ import annotations

import json

import pytest
import torch

from sepcheck import SepcheckError
from sepcheck.datasets import Dataset
from sepcheck.train import ATParams, GRParams, TradesParams, TrainConfig, train
from sepcheck.train.data import crop_flip, prepare
from sepcheck.train.evaluate import load_model
from sepcheck.train.losses import METHODS, get_loss
from sepcheck.train.models import build_model, default_arch
from sepcheck.train.runs import RunDir, load_checkpoint, read_log
from tests.train.tiny import tiny_data

pytestmark = pytest.mark.usefixtures("one_thread")


def _kw(method: str) -> dict:
    return {"natural": {}, "gr": {}, "llr": {"eps": 0.1}, "at": {"eps": 0.1, "steps": 3},
            "trades": {"eps": 0.1, "beta": 3.0, "steps": 3}}[method]


@pytest.mark.parametrize("method", list(METHODS))
def test_few_steps_lower_the_loss(method, device):
    data = tiny_data()
    x, y = data.X[:24].to(device), data.y[:24].to(device)
    torch.manual_seed(0)
    model = build_model("tiny_cnn", data.input_shape, data.n_classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    fn = get_loss(method)

    def value() -> float:
        torch.manual_seed(123)
        return float(fn(model, x, y, **_kw(method))[0].detach())

    before = value()
    for _ in range(20):
        loss, _ = fn(model, x, y, **_kw(method))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert value() < 0.85 * before


def _cfg(device: str, **kw) -> TrainConfig:
    base = dict(method="at", dataset="stripes", params=ATParams(steps=2), arch="tiny_cnn", eps=0.1, epochs=3,
                batch_size=16, lr=0.05, seed=3, augment="crop-flip", device=device)
    base.update(kw)
    return TrainConfig(**base)


def _strip_time(log):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in log]


def test_resume_reproduces_the_uninterrupted_run(tmp_path, device):
    data = tiny_data(channels=3)
    cfg = _cfg(device, deterministic=True)  # needed on CUDA; on the CPU runs reproduce anyway
    full = train(cfg, tmp_path / "full", data=data, progress=False)

    def interrupt(record):
        assert torch.are_deterministic_algorithms_enabled()
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", data=data, progress=False, on_epoch_end=interrupt)
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run
    cut = RunDir(tmp_path / "cut")
    assert cut.latest.exists() and not cut.final.exists()
    assert len(read_log(cut)) == 1
    with pytest.raises(SepcheckError, match="--resume to continue it or --force"):
        train(cfg, cut.path, data=data, progress=False)
    with pytest.raises(SepcheckError, match="started with epochs=3"):
        train(_cfg(device, deterministic=True, epochs=4), cut.path, data=data, progress=False, resume=True)
    stored = json.loads(cut.config.read_text())
    other = "float16" if stored["amp_dtype"] == "bfloat16" else "bfloat16"
    cut.config.write_text(json.dumps({**stored, "amp_dtype": other}))
    with pytest.raises(SepcheckError, match=f"started with amp_dtype='{other}'"):
        train(cfg, cut.path, data=data, progress=False, resume=True)
    cut.config.write_text(json.dumps(stored))
    resumed = train(cfg, cut.path, data=data, progress=False, resume=True)
    assert resumed.resumed_from == 1
    assert _strip_time(read_log(cut)) == _strip_time(full.log)
    a = load_checkpoint(RunDir(tmp_path / "full").final)["model"]
    b = load_checkpoint(cut.final)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_folder_contents(tmp_path, device):
    data = tiny_data()
    res = train(_cfg(device, method="trades", params=TradesParams(beta=6.0, steps=2), epochs=2, augment="auto"),
                tmp_path / "r", data=data, progress=False)
    run = RunDir(res.run_dir)
    cfg = json.loads(run.config.read_text())
    for key in ("sepcheck_version", "torch_version", "method", "params", "arch", "seed", "dataset", "epochs",
                "batch_size", "lr", "optimizer", "schedule", "norm", "eps", "amp_dtype", "deterministic"):
        assert key in cfg, key
    assert cfg["params"] == {"beta": 6.0, "steps": 2, "step_size": None} and cfg["label"] == "TRADES(β=6)"
    assert cfg["amp_dtype"] == ("bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else
                                "float16" if device == "cuda" else None)
    assert cfg["augment"] == "none"  # 1-channel 8x8 images are not CIFAR-like
    log = read_log(run)
    assert [r["epoch"] for r in log] == [1, 2]
    assert {"loss", "train_acc", "test_acc", "lr", "time_s"} <= set(log[0])
    latest = load_checkpoint(run.latest)  # weights_only=True inside
    assert {"model", "optimizer", "schedule", "rng", "epoch"} <= set(latest)
    assert isinstance(latest["rng"]["torch"][0], torch.Tensor)
    model, cfg2, finished = load_model(run.path, device)
    assert finished and cfg2["arch"] == "tiny_cnn"
    assert not list(run.path.glob("*.part"))
    # --force starts over
    again = train(_cfg(device, epochs=1), run.path, data=data, progress=False, force=True)
    assert len(read_log(RunDir(again.run_dir))) == 1


def test_trainer_rejects_bad_options(tmp_path):
    data = tiny_data()
    for kw, msg in [({"eps": -0.1}, "--eps"), ({"method": "trades", "params": TradesParams(beta=-1.0)}, "--beta"),
                    ({"method": "gr", "params": GRParams(lam=-1.0), "eps": None}, "--lambda"),
                    ({"method": "pgd"}, "unknown method"), ({"params": GRParams()}, "give ATParams"),
                    ({"optimizer": "rmsprop"}, "unknown optimizer"), ({"arch": "vgg"}, "unknown architecture"),
                    ({"epochs": 0}, "--epochs"), ({"norm": "l1"}, "linf' or 'l2")]:
        with pytest.raises(SepcheckError, match=msg):
            train(_cfg("cpu", **kw), tmp_path / "bad", data=data, progress=False)
    with pytest.raises(SepcheckError, match="needs an attack radius"):
        train(_cfg("cpu", eps=None), tmp_path / "bad", data=prepare(Dataset("s", data.raw[0], data.raw[1])),
              progress=False)


def test_models_registry_and_default_arch():
    assert default_arch((1, 28, 28)) == "mnist_cnn"
    assert default_arch((3, 32, 32)) == "wrn40_10"
    assert default_arch((3, 112, 112)) == "resnet50"
    assert default_arch((1, 8, 8)) == "tiny_cnn"
    assert default_arch((20,)) == "mlp"
    cnn = build_model("mnist_cnn", (1, 28, 28), 10)
    assert sum(p.numel() for p in cnn.parameters()) == 1_199_882  # the PyTorch MNIST example net
    assert cnn(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert build_model("mlp", (5,), 3)(torch.rand(4, 5)).shape == (4, 3)
    with pytest.raises(SepcheckError, match="needs images"):
        build_model("tiny_cnn", (5,), 3)
    with pytest.raises(SepcheckError, match="unknown architecture"):
        build_model("vgg16", (3, 32, 32), 10)


def test_large_architectures_have_the_published_sizes():
    wrn = build_model("wrn40_10", (3, 32, 32), 10)
    assert abs(sum(p.numel() for p in wrn.parameters()) - 55.8e6) < 0.1e6  # WRN-40-10: 55.8M
    rn = build_model("resnet50", (3, 224, 224), 1000)
    assert sum(p.numel() for p in rn.parameters()) == 25_557_032  # torchvision's resnet50
    small = build_model("wrn40_10_drop50", (3, 32, 32), 10)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in small.modules())


def test_crop_flip_keeps_shape_and_content():
    x = torch.rand(6, 3, 8, 8)
    torch.manual_seed(0)
    out = crop_flip(x, pad=2)
    assert out.shape == x.shape
    torch.manual_seed(0)
    same = crop_flip(x, pad=0)
    assert all(torch.equal(same[i], x[i]) or torch.equal(same[i], x[i].flip(2)) for i in range(6))
