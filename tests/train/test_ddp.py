"""DistributedDataParallel on the CPU: two processes, gloo, joined from the environment
variables torchrun sets. Natural training matches the single-process run (the global batch is
split over the processes and the gradients averaged); TRADES (several forward passes per step)
keeps the processes' models identical; only rank 0 writes the run folder."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from sepcheck.train import TrainConfig, train
from sepcheck.train.runs import RunDir, load_checkpoint, read_log
from tests.train.tiny import tiny_data

METHODS = [("natural", {}), ("trades", {"beta": 3.0, "steps": 2})]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cfg(method: str, **kw) -> TrainConfig:
    return TrainConfig.from_options(method, "stripes", arch="tiny_cnn", eps=0.1, epochs=2, batch_size=16,
                                    lr=0.05, seed=1, device="cpu", augment="none", **kw)


def _worker(rank: int, world: int, ports: list[int], out: str) -> None:
    """One process of the job, set up as torchrun would (environment variables)."""
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1"})
    data = tiny_data()
    for port, (method, kw) in zip(ports, METHODS, strict=True):
        os.environ["MASTER_PORT"] = str(port)
        res = train(_cfg(method, **kw), os.path.join(out, method), data=data, progress=False)
        torch.save(res.model.state_dict(), os.path.join(out, f"{method}-rank{rank}.pt"))


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path):
    ports = [_free_port(), _free_port()]
    mp.spawn(_worker, args=(2, ports, str(tmp_path)), nprocs=2, join=True)
    for method, _ in METHODS:
        r0 = torch.load(tmp_path / f"{method}-rank0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{method}-rank1.pt", weights_only=True)
        assert all(torch.equal(r0[k], r1[k]) for k in r0), method
    assert '"world_size": 2' in RunDir(tmp_path / "trades").config.read_text()
    # natural: the two-process run equals the single-process run on the same global batches
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(_cfg("natural"), tmp_path / "single", data=tiny_data(), progress=False)
    finally:
        torch.set_num_threads(n)
    ddp = load_checkpoint(RunDir(tmp_path / "natural").final)["model"]
    for k, v in single.model.state_dict().items():
        assert torch.allclose(ddp[k], v, atol=1e-5), k
    ddp_log = read_log(RunDir(tmp_path / "natural"))
    assert [r["samples"] for r in ddp_log] == [48, 48]
    for a, b in zip(ddp_log, single.log, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["train_acc"] == pytest.approx(b["train_acc"])
