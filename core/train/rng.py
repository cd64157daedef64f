"""Random state as a function of the update: per-update reseeding and RNG snapshots.

Before a stage builds its components, :func:`seed_initialisation` seeds every
generator from ``trainer.seed``, so model initialisation follows the seed.
Every micro-batch's forward starts by reseeding Python's, NumPy's and torch's
global generators (CPU and every CUDA device) from ``(seed, update, rank,
micro-batch)``, after the batch is fetched; so dropout, masks, negatives and
LayerDrop depend on the update number alone (not on how much randomness data
loading or validation used before), and a resumed run repeats the
uninterrupted one bit for bit.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def update_seed(seed: int, update: int, rank: int = 0, stream: int = 0, micro: int = 0) -> int:
    """A 63-bit seed for micro-batch ``micro`` of ``update`` on ``rank``; ``stream`` separates
    uses (0 train, 1 valid, 2 data loaders, 3 initialisation)."""
    h = _mix64(seed)
    for part in (update, rank, stream, micro):
        h = _mix64(h ^ (part & _MASK64))
    return h >> 1


def reseed(value: int, device: torch.device | None = None) -> None:
    """Seed Python, NumPy and torch's CPU generator from one 63-bit value, plus the
    accelerator's generators when ``device`` is one (``None``: everything torch.manual_seed
    seeds, which on a CUDA build without a GPU in use costs a stack capture per call)."""
    random.seed(value)
    np.random.seed(value & 0xFFFFFFFF)
    if device is None:
        torch.manual_seed(value)
        return
    torch.random.default_generator.manual_seed(value)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(value)
    elif device.type == "mps":
        torch.mps.manual_seed(value)


def seed_initialisation(seed: int) -> None:
    """Seed every generator from ``trainer.seed`` (stream 3) before a stage builds its model
    and objective, so their initialisation follows the seed and not the process's history;
    every rank draws the same values."""
    reseed(update_seed(seed, 0, rank=0, stream=3))


def capture_rng_state() -> dict[str, Any]:
    """Every global generator's state, as plain Python and tensors (safe for weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state` (CUDA states only when the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
