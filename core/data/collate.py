"""Items to a :class:`~w2v.interfaces.Batch`: crop (pretraining) or pad (fine-tuning).

- ``pad=False``: every waveform is cropped to the batch's shortest (and to
  ``max_sample_size``), so the batch has no padding and ``lengths`` is None.
  The crop offset is a pure function of ``(seed, epoch, id)`` in training,
  so a resumed run crops exactly as the original did; 0 in evaluation.
- ``pad=True``: waveforms are zero-padded to the longest (rounded up to a
  bucket edge when buckets are on) and ``lengths`` carries the valid samples;
  a waveform longer than ``max_sample_size`` is cropped as above.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from ..interfaces import Batch
from .skips import BadInput

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
    return x ^ (x >> np.uint64(31))


def uniform_hash(ids: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """``[B]`` floats in [0, 1), a deterministic function of (seed, epoch, id)."""
    key = _mix(_mix(np.array([seed], dtype=np.uint64)) ^ np.array([epoch], dtype=np.uint64))
    h = _mix(key ^ np.asarray(ids, dtype=np.int64).astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def crop_offsets(ids: np.ndarray, lengths: np.ndarray, size: int, *, seed: int, epoch: int,
                 random: bool = True) -> np.ndarray:
    """Start of a ``size``-sample window in each waveform (0 where it is not longer).

    ``random=False`` gives offset 0 (evaluation).
    """
    room = np.maximum(np.asarray(lengths, dtype=np.int64) - size, 0)
    if not random:
        return np.zeros_like(room)
    u = uniform_hash(ids, seed, epoch)
    return np.minimum((u * (room + 1)).astype(np.int64), room)


class LoaderFailure:
    """What the collater returns for a bad input under the ``fail`` policy; the loader raises
    its DataError in the main process (so the message carries no worker traceback)."""

    def __init__(self, bad: BadInput):
        self.bad = bad


class Collater:
    """``collate_fn`` for :class:`~w2v.data.dataset.AudioDataset` items.

    Args:
        pad: zero-pad and carry lengths (True) or crop to the shortest (False).
        max_sample_size: longest waveform kept; longer ones are cropped.
        pad_id: label padding id (the dictionary's ``pad``).
        seed: crop seed; with the batch's epoch and each id it fixes the offset.
        train: random crops (True) or offset 0 (False).
        bucket_edges: sorted lengths to round padded batches up to, or None.
        bad_input: ``fail`` (return a :class:`LoaderFailure`) or ``skip``
            (drop the item; its record goes to ``batch.extra["skipped"]``).
    """

    def __init__(self, *, pad: bool, max_sample_size: int, pad_id: int = 1, seed: int = 1,
                 train: bool = True, bucket_edges: Sequence[int] | None = None,
                 bad_input: str = "fail"):
        self.pad = pad
        self.max_sample_size = max_sample_size
        self.pad_id = pad_id
        self.seed = seed
        self.train = train
        self.bucket_edges = None if bucket_edges is None else np.asarray(bucket_edges)
        self.bad_input = bad_input

    def __call__(self, items: Sequence[dict[str, Any]]) -> Batch | LoaderFailure:
        epoch = getattr(items, "epoch", 0)
        bad = [it["bad"] for it in items if "bad" in it]
        if bad and self.bad_input == "fail":
            return LoaderFailure(bad[0])
        good = [it for it in items if "bad" not in it]
        extra: dict[str, Any] = {"skipped": [b.to_record() for b in bad]}
        if getattr(items, "repeat", False):
            extra["repeat"] = True
        if not good:
            return Batch(source=torch.zeros(0, 0), ids=torch.zeros(0, dtype=torch.long),
                         extra=extra)
        waves = [it["wave"] for it in good]
        ids = np.array([it["id"] for it in good], dtype=np.int64)
        lengths = np.array([w.shape[0] for w in waves], dtype=np.int64)
        if self.pad:
            source, valid = self._pad(waves, ids, lengths, epoch)
        else:
            source, valid = self._crop(waves, ids, lengths, epoch), None
        targets = target_lengths = None
        if good[0].get("target") is not None:
            labels = [it["target"] for it in good]
            target_lengths = torch.tensor([t.shape[0] for t in labels], dtype=torch.long)
            targets = pad_sequence(labels, batch_first=True, padding_value=self.pad_id)
        return Batch(source=source, lengths=valid, ids=torch.from_numpy(ids), targets=targets,
                     target_lengths=target_lengths, extra=extra)

    def _windows(self, waves, ids, lengths, size, epoch) -> list[torch.Tensor]:
        starts = crop_offsets(ids, lengths, size, seed=self.seed, epoch=epoch, random=self.train)
        return [w[s:s + size] for w, s in zip(waves, starts.tolist())]

    def _crop(self, waves, ids, lengths, epoch) -> torch.Tensor:
        """``[B, min(shortest, max_sample_size)]``, no padding."""
        size = int(min(lengths.min(), self.max_sample_size))
        return torch.stack(self._windows(waves, ids, lengths, size, epoch))

    def _pad(self, waves, ids, lengths, epoch) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T]`` zero-padded (T = longest, rounded up to a bucket edge) and ``[B]`` lengths."""
        longest = int(min(lengths.max(), self.max_sample_size))
        if (lengths > longest).any():
            waves = self._windows(waves, ids, lengths, longest, epoch)
            lengths = np.minimum(lengths, longest)
        width = longest
        if self.bucket_edges is not None and len(self.bucket_edges):
            k = int(np.searchsorted(self.bucket_edges, longest))
            if k < len(self.bucket_edges):
                width = int(self.bucket_edges[k])
        source = pad_sequence(waves, batch_first=True)
        if width > source.shape[1]:
            source = torch.nn.functional.pad(source, (0, width - source.shape[1]))
        return source, torch.from_numpy(lengths)
