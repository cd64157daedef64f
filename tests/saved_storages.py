"""What autograd keeps for backward: the bytes of the distinct storages a call saves."""

from __future__ import annotations

from typing import Any, Callable

import torch


def saved_storage_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``(fn(), bytes)``: the bytes of the distinct storages autograd saves for backward while
    ``fn()`` runs (a storage saved twice, or through two views, counts once)."""
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())
