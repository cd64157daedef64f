"""DataLoader worker counts that fit the machine.

A recipe written for a GPU server (``num_workers: 6``) must not start six
loader processes per split on a 2-core laptop: :func:`usable_workers` caps the
count at the CPU cores this process may run on (``os.sched_getaffinity``, which
respects taskset, cgroups' cpusets and SLURM; ``os.cpu_count()`` where it does
not exist), shared among the processes of this machine (``LOCAL_WORLD_SIZE``,
set by torchrun), and logs the cap once.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("w2v")

_reported: set[tuple[int, int]] = set()


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):     # macOS, Windows
        return max(1, os.cpu_count() or 1)


def usable_workers(requested: int, *, local_world_size: int | None = None) -> int:
    """``requested`` worker processes, at most this process's share of the cores.

    Args:
        requested: ``data.num_workers``.
        local_world_size: training processes on this machine (default: the
            ``LOCAL_WORLD_SIZE`` environment variable, else 1).
    """
    if local_world_size is None:
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    cores = available_cores()
    cap = max(1, cores // max(local_world_size, 1))
    if requested <= cap:
        return requested
    if (requested, cap) not in _reported:
        _reported.add((requested, cap))
        share = f" shared by {local_world_size} processes" if local_world_size > 1 else ""
        log.info("data.num_workers %d capped to %d: %d CPU core%s available%s.", requested, cap,
                 cores, "" if cores == 1 else "s", share)
    return cap
