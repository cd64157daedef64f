"""A data source of unit sequences (``<split>.src`` + ``dict.src.txt``) for BERT training.

:class:`UnitDataset` holds every line's token ids in one flat array;
:func:`build_unit_loader` batches them with the core's resumable
:class:`~w2v.data.sampler.BucketBatchSampler` (``max_tokens`` counts units)
and yields :class:`~w2v.interfaces.Batch` es with ``source`` ``[B, T]`` long
ids (padded with the dictionary's ``pad``) and ``lengths`` ``[B]``.
Sequences longer than ``max_len`` are cropped to a window whose start is a
function of (seed, epoch, row), so a resumed run sees the same batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from w2v.data.collate import crop_offsets
from w2v.data.dataset import IndexBatch
from w2v.data.dictionary import Dictionary
from w2v.data.sampler import BucketBatchSampler
from w2v.errors import DataError
from w2v.interfaces import Batch

from .units import DICT_FILE, read_lines


class UnitDataset(torch.utils.data.Dataset):
    """Lines of a ``.src`` file as id tensors; lines shorter than ``min_len`` are left out.

    Attributes:
        rows: ``[N]`` line index (0-based, = manifest row) of each kept sequence.
        sizes: ``[N]`` tokens per kept sequence.
    """

    def __init__(self, path: str | Path, dictionary: Dictionary, *, min_len: int = 1) -> None:
        self.path = str(path)
        self.dictionary = dictionary
        lines = read_lines(path)
        ids = [dictionary.encode(line.split()) for line in lines]
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        keep = np.flatnonzero(lengths >= max(min_len, 1))
        self.rows = keep
        self.sizes = lengths[keep]
        flat = [t for i in keep.tolist() for t in ids[i]]
        self._tokens = np.asarray(flat, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.num_lines = len(lines)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        tokens = torch.from_numpy(self._tokens[self._offsets[i]:self._offsets[i + 1]])
        return {"id": int(self.rows[i]), "tokens": tokens}

    def __getitems__(self, indices: Sequence[int]) -> IndexBatch:
        return IndexBatch([self[i] for i in indices], getattr(indices, "epoch", 0),
                          getattr(indices, "repeat", False))


class UnitCollater:
    """Items -> :class:`Batch`: ``source`` ``[B, T]`` padded with ``pad_id``, ``lengths`` ``[B]``;
    sequences over ``max_len`` are cropped (random window in training, the start otherwise)."""

    def __init__(self, *, pad_id: int, max_len: int, seed: int = 1, train: bool = True) -> None:
        self.pad_id, self.max_len, self.seed, self.train = pad_id, max_len, seed, train

    def __call__(self, items: Sequence[dict[str, Any]]) -> Batch:
        epoch = getattr(items, "epoch", 0)
        ids = np.array([it["id"] for it in items], dtype=np.int64)
        lengths = np.array([it["tokens"].shape[0] for it in items], dtype=np.int64)
        starts = crop_offsets(ids, lengths, self.max_len, seed=self.seed, epoch=epoch,
                              random=self.train)
        seqs = [it["tokens"][s:s + self.max_len] for it, s in zip(items, starts.tolist())]
        extra = {"repeat": True} if getattr(items, "repeat", False) else {}
        return Batch(source=pad_sequence(seqs, batch_first=True, padding_value=self.pad_id),
                     lengths=torch.tensor([s.shape[0] for s in seqs], dtype=torch.long),
                     ids=torch.from_numpy(ids), extra=extra)


def load_unit_dictionary(units_dir: str | Path) -> Dictionary:
    return Dictionary.load(Path(units_dir) / DICT_FILE)


def build_unit_loader(units_dir: str | Path, split: str, dictionary: Dictionary, *,
                      max_tokens: int, max_len: int, min_len: int = 1, seed: int = 1,
                      train: bool = True, shuffle: bool = True, rank: int = 0,
                      world_size: int = 1, epoch: int = 0):
    """``(DataLoader of Batch, BucketBatchSampler)`` over ``<units_dir>/<split>.src``."""
    if max_tokens < max_len:
        raise DataError(f"max_tokens ({max_tokens}) must be at least max_len ({max_len}) so one "
                        "sequence fits a batch.", key="max_tokens")
    dataset = UnitDataset(Path(units_dir) / f"{split}.src", dictionary, min_len=min_len)
    if len(dataset) == 0:
        raise DataError(f"`{dataset.path}` has no sequence of at least {min_len} units.",
                        hint="Export more (or longer) audio, or lower `min_len`.")
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=max_tokens, max_sample_size=max_len,
                                 shuffle=train and shuffle, seed=seed, rank=rank,
                                 world_size=world_size, epoch=epoch)
    collate = UnitCollater(pad_id=dictionary.pad, max_len=max_len, seed=seed, train=train)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    return loader, sampler
