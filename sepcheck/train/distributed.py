"""Multi-process training through ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N --no-python sepcheck train ...`` starts N processes; each joins
the process group (:mod:`sepcheck.core.process_group`, shared with the sharded searches), takes its
share of every batch, and DistributedDataParallel averages the gradients. Only rank 0 writes
the run folder.
"""

from __future__ import annotations

from torch import nn

from ..core.process_group import DistContext, all_reduce_sum, barrier, cleanup, gather_tensor, setup


def wrap(model: nn.Module, ctx: DistContext, device) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several processes."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else ctx.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


__all__ = ["DistContext", "setup", "cleanup", "wrap", "all_reduce_sum", "gather_tensor", "barrier"]
