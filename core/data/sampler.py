"""Batches packed by audio samples, shuffled per epoch, sharded over ranks, resumable.

Each epoch: sort utterances by length (longest first, ties broken randomly
with ``seed + epoch``), pack consecutive ones while ``max length x batch
size <= max_tokens`` (lengths capped at ``max_sample_size``, as fairseq's
``batch_by_size``), shuffle the batch order, and give rank ``r`` the batches
``r, r + world, ...``. Every rank gets the same number of batches: the list
is padded by repeating batches from its start (flagged ``repeat``), so DDP
never waits on a rank that ran out.

The position saved by :meth:`state_dict` counts batches the trainer
*consumed* (:meth:`mark_consumed` after each update), not batches the
DataLoader prefetched, so resuming yields exactly the batches not yet used.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from .dataset import IndexBatch

log = logging.getLogger(__name__)


def bucket_edges(sizes: np.ndarray, num_buckets: int) -> np.ndarray:
    """Upper edges of ``num_buckets`` length buckets at equal percentiles (unique, sorted)."""
    if num_buckets <= 0 or len(sizes) == 0:
        return np.zeros(0, dtype=np.int64)
    qs = np.percentile(sizes, np.linspace(0, 100, num_buckets + 1)[1:], method="higher")
    return np.unique(qs.astype(np.int64))


def bucketed(sizes: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each size rounded up to its bucket's edge (unchanged without edges)."""
    if len(edges) == 0:
        return sizes
    k = np.minimum(np.searchsorted(edges, sizes), len(edges) - 1)
    return np.maximum(edges[k], sizes)


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batch sampler over dataset positions ``0..len(sizes)-1``.

    Args:
        sizes: ``[N]`` samples per utterance.
        max_tokens: budget per batch, ``max(item sizes) x batch size``.
        max_sample_size: an item counts as at most this many samples (it is cropped).
        num_buckets: round sizes up to ``num_buckets`` percentile edges (0: off).
        shuffle: random tie-breaks and batch order per epoch (False: longest first).
        seed: base seed; epoch ``e`` uses ``numpy.random.default_rng([seed, e])``.
        rank, world_size: this process's shard.
        max_batch_size: cap on utterances per batch (None: only ``max_tokens``).
    """

    def __init__(self, sizes: np.ndarray, *, max_tokens: int, max_sample_size: int | None = None,
                 num_buckets: int = 0, shuffle: bool = True, seed: int = 1, rank: int = 0,
                 world_size: int = 1, max_batch_size: int | None = None, epoch: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), found {rank}")
        sizes = np.asarray(sizes, dtype=np.int64)
        if max_sample_size is not None:
            sizes = np.minimum(sizes, max_sample_size)
        self.edges = bucket_edges(sizes, num_buckets)
        self.sizes = bucketed(sizes, self.edges)
        self.max_tokens = int(max_tokens)
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = epoch
        self.consumed = 0
        self._plans: dict[int, list[IndexBatch]] = {}

    # ------------------------------------------------------------------ planning
    def batches(self, epoch: int) -> list[np.ndarray]:
        """All batches of ``epoch`` (every rank's), in the order they are dealt out."""
        n = len(self.sizes)
        rng = np.random.default_rng([self.seed, epoch])
        ties = rng.permutation(n) if self.shuffle else np.arange(n)
        order = np.lexsort((-ties, self.sizes))[::-1]  # longest first
        ordered = self.sizes[order]
        cut, starts = 0, []
        while cut < n:  # one iteration per batch; items sorted longest first
            starts.append(cut)
            fit = max(1, self.max_tokens // max(int(ordered[cut]), 1))
            if self.max_batch_size:
                fit = min(fit, self.max_batch_size)
            cut += fit
        out = np.split(order, starts[1:])
        if self.shuffle:
            out = [out[i] for i in rng.permutation(len(out))]
        return out

    def plan(self, epoch: int) -> list[IndexBatch]:
        """This rank's batches for ``epoch``; equal in number on every rank."""
        if epoch not in self._plans:
            every = self.batches(epoch)
            per_rank = math.ceil(len(every) / self.world_size)
            slots = range(self.rank, per_rank * self.world_size, self.world_size)
            self._plans = {epoch: [IndexBatch(every[s % len(every)].tolist(), epoch,
                                              s >= len(every)) for s in slots]}
        return self._plans[epoch]

    # ------------------------------------------------------------------ iteration
    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` (the position resets unless it is the current epoch)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.consumed = 0

    def mark_consumed(self, num_batches: int = 1) -> None:
        """Record that training used ``num_batches`` more batches of this epoch."""
        self.consumed += num_batches

    def __iter__(self) -> Iterator[IndexBatch]:
        """This rank's batches of the current epoch not yet consumed (none once all are)."""
        yield from self.plan(self.epoch)[self.consumed:]

    def __len__(self) -> int:
        """Batches the next pass yields on this rank."""
        return max(0, len(self.plan(self.epoch)) - self.consumed)

    # ------------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": self.consumed, "world_size": self.world_size,
                "num_items": len(self.sizes), "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at the saved epoch and position.

        With a different world size the position is converted to the global
        batch count (up to ``world_size - 1`` batches are then skipped, none repeat).
        """
        consumed = int(state["consumed"])
        if state.get("num_items", len(self.sizes)) != len(self.sizes):
            log.warning("resuming a data position saved for %d utterances on %d; the batches "
                        "differ from the saved run", state["num_items"], len(self.sizes))
        old_world = int(state.get("world_size", self.world_size))
        if old_world != self.world_size:
            consumed = math.ceil(consumed * old_world / self.world_size)
            log.warning("resuming on %d ranks a position saved on %d: continuing at batch %d "
                        "of this epoch on each rank", self.world_size, old_world, consumed)
        self.epoch = int(state["epoch"])
        self.consumed = consumed
