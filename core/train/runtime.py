"""Device choice, CPU thread settings and activation checkpointing (``trainer.compile``:
:mod:`.compiling`)."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import ConfigError


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> cuda (this rank's GPU), else mps, else cpu; an explicit choice is checked."""
    cuda_ok = torch.cuda.is_available()
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
    if name == "cuda":
        if not cuda_ok:
            raise ConfigError("`device: cuda` was asked for, but torch sees no CUDA GPU.",
                              key="trainer.device", hint="Use `device: auto` or `cpu`.")
        index = local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if name == "mps":
        if not mps_ok:
            raise ConfigError("`device: mps` was asked for, but this machine has no MPS device.",
                              key="trainer.device", hint="Use `device: auto` or `cpu`.")
        return torch.device("mps")
    return torch.device("cpu")


def configure_threads(num_threads: int, local_world_size: int = 1) -> int:
    """Set torch's CPU threads and keep loader workers' OpenMP at one thread each. ``0``:
    ``OMP_NUM_THREADS`` when the environment sets it (so jobs sharing a machine can each be
    given their share), else cpu count / local world size. Returns the thread count set."""
    n = num_threads or omp_threads() or max(1, (os.cpu_count() or 1) // max(local_world_size, 1))
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by spawned loader workers
    return n


def omp_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a positive int, or None when unset or not one."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def enable_activation_checkpointing(model: nn.Module) -> list[str]:
    """Turn on activation checkpointing in every module of ``model`` that offers it
    (``set_activation_checkpointing``); returns their names."""
    done = []
    for name, module in model.named_modules():
        if hasattr(module, "set_activation_checkpointing"):
            module.set_activation_checkpointing(True)
            done.append(name or "model")
    return done
