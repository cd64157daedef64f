"""torchrun detection, process-group setup, DDP wrapping and small collectives.

A run launched with ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the
environment) joins a process group (``gloo`` on CPU, ``nccl`` on CUDA); each
rank trains on its shard of the batches and DDP averages gradients. Only rank 0
logs and writes checkpoints. See ``docs/distributed.md`` for launch lines.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import attrs
import torch
import torch.distributed as dist
from torch import nn


@attrs.frozen(kw_only=True)
class DistInfo:
    """Where this process sits: global rank, world size, local rank and local world size."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def detect() -> DistInfo:
    """Read torchrun's environment (a plain ``python`` run is rank 0 of 1)."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return DistInfo(rank=int(env.get("RANK", "0")), world_size=world,
                    local_rank=int(env.get("LOCAL_RANK", "0")),
                    local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))))


def init_distributed(device: torch.device, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun set up (no-op for a single process or if joined)."""
    info = detect()
    if info.is_distributed and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device, timeout=timedelta(seconds=timeout_s))
        else:
            dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    if dist.is_initialized():
        info = DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                        local_rank=info.local_rank, local_world_size=info.local_world_size)
    return info


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op without a process group)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (``[obj]`` without a process group)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def has_layerdrop(module: nn.Module) -> bool:
    """True when any submodule has a positive ``layerdrop`` (or ``layer_drop``) attribute."""
    for m in module.modules():
        for name in ("layerdrop", "layer_drop"):
            value = getattr(m, name, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return True
    return False


def wrap_ddp(module: nn.Module, device: torch.device, find_unused_parameters: bool) -> nn.Module:
    """``DistributedDataParallel`` around ``module`` (returned unchanged without a group)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return module
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused_parameters,
        gradient_as_bucket_view=True)
