"""Process groups under ``torchrun``: the one place that joins, talks to and leaves the group.

``torchrun --nproc_per_node=N ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`setup`
joins the process group (NCCL on GPUs, one GPU per process from ``LOCAL_RANK``; gloo on the
CPU). Training (:mod:`sepcheck.train`, DistributedDataParallel) and the sharded searches
(:mod:`sepcheck.runs.run`) both use it. Every collective here turns a failure of another
process (it died, or the group was torn down) into one :class:`SepcheckError` line (exit
code 2: a rank that dies is reported like bad input).

torch is imported on first use: importing this module costs nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .devices import env_local_rank
from .errors import SepcheckError, SepcheckRuntimeError, cause


@dataclass
class DistContext:
    """Where this process stands: rank, number of processes, local rank, backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when absent or not a number)."""
    text = os.environ.get("WORLD_SIZE", "1").strip()
    return int(text) if text.isdigit() and int(text) > 0 else 1


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (or use one already initialised)."""
    import torch
    import torch.distributed as dist

    local_rank = env_local_rank()
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(),
                           dist.get_rank() if local_rank is None else local_rank, dist.get_backend())
    if env_world_size() <= 1:
        return DistContext()
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank or 0)
    try:
        dist.init_process_group(backend=backend)
    except Exception as exc:  # noqa: BLE001 -- a store that never answers, a refused connection
        raise SepcheckRuntimeError(f"cannot join the torchrun process group ({cause(exc)}): check "
                                   "MASTER_ADDR/MASTER_PORT and that every process started") from None
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank or 0, backend, owns_group=True)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group if :func:`setup` joined it."""
    import torch.distributed as dist

    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def share_cores(ctx: DistContext) -> int | None:
    """Give each of the processes on this machine its share of the CPU cores.

    With ``LOCAL_WORLD_SIZE`` > 1 (torchrun), torch and the compiled kernels (through
    ``SEPCHECK_THREADS``, unless the user set it) get cores / local processes threads each:
    two processes with all cores each would fight over them. Returns the thread count set,
    or None when nothing changed.
    """
    local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    n_local = int(local) if local.isdigit() and int(local) > 0 else (ctx.world_size if ctx.enabled else 1)
    if n_local <= 1:
        return None
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // n_local)
    torch.set_num_threads(threads)
    os.environ.setdefault("SEPCHECK_THREADS", str(threads))
    return threads


def _lost(ctx: DistContext, exc: BaseException) -> SepcheckError:
    why = re.sub(r"^\[[^\]]*\]\s*", "", cause(exc, 300)).split(". ")[0]  # gloo: "[file.cc:537] Read error ..."
    return SepcheckError(
        f"rank {ctx.rank} of {ctx.world_size}: another process of the job stopped or did not answer "
        f"({why}); nothing was written: rerun the job (with --resume to "
        "keep the shards already finished)"
    )


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op with one); a process that died -> SepcheckError."""
    if not ctx.enabled:
        return
    import torch.distributed as dist

    try:
        dist.barrier()
    except Exception as exc:  # noqa: BLE001 -- DistBackendError, RuntimeError from gloo/NCCL
        raise _lost(ctx, exc) from None


def gather_object(obj: Any, ctx: DistContext) -> list[Any] | None:
    """Every process's picklable ``obj`` on rank 0 (rank order), None on the others;
    ``[obj]`` with one process. A process that died -> SepcheckError."""
    if not ctx.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    try:
        dist.gather_object(obj, out, dst=0)
    except Exception as exc:  # noqa: BLE001
        raise _lost(ctx, exc) from None
    return out


def all_reduce_sum(values: list[float], ctx: DistContext, device: Any) -> list[float]:
    """Sum of each value over all processes (identity with one process)."""
    if not ctx.enabled:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def gather_tensor(t: Any, ctx: DistContext, device: Any) -> list[Any]:
    """Every process's copy of a same-shaped tensor (rank order); ``[t]`` with one process."""
    if not ctx.enabled:
        return [t.clone()]
    import torch
    import torch.distributed as dist

    src = t.to(device=device, dtype=torch.int64) if t.dtype == torch.uint8 else t.to(device)
    out = [torch.empty_like(src) for _ in range(ctx.world_size)]
    dist.all_gather(out, src)
    return [o.to("cpu", dtype=t.dtype) for o in out]


__all__ = ["DistContext", "env_world_size", "setup", "cleanup", "share_cores", "barrier", "gather_object",
           "all_reduce_sum", "gather_tensor"]
