"""sepcheck.core.process_group outside a process group: one process is a group of one, and the CPU
cores are shared between the processes torchrun starts on one machine."""

from __future__ import annotations

import os

import torch

from sepcheck.core import process_group


def test_one_process_is_a_group_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = process_group.setup("cpu")
    assert not ctx.enabled and ctx.is_main
    assert process_group.gather_object({"a": 1}, ctx) == [{"a": 1}]
    process_group.barrier(ctx)
    process_group.cleanup(ctx)


def test_cores_are_shared_between_local_processes(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.delenv("SEPCHECK_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        threads = process_group.share_cores(process_group.DistContext(rank=1, world_size=2))
        assert threads == max(1, len(os.sched_getaffinity(0)) // 2)
        assert torch.get_num_threads() == threads and os.environ["SEPCHECK_THREADS"] == str(threads)
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert process_group.share_cores(process_group.DistContext()) is None
