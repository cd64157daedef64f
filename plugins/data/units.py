"""The ``units`` data source: unit token files (``<split>.src`` + ``dict.src.txt``).

One line per utterance, whitespace-separated tokens of the dictionary: the
discrete units an ``export_units`` stage writes (vq-wav2vec), or phonemised text
over a phone dictionary (``ext: phn``, ``dict.phn.txt``; wav2vec-U's unpaired
text). :class:`UnitDataset` holds every line's ids in one flat array;
batches have ``source`` ``[B, T]`` long ids (padded with the dictionary's
``pad``) and ``lengths`` ``[B]``; ``max_tokens`` counts tokens. Sequences
longer than ``max_len`` are cropped to a window whose start is a function of
(seed, epoch, row), so a resumed run sees the same batches. A token outside
the dictionary is ``<unk>``, as fairseq-preprocess maps it; lines shorter than ``min_len``
are left out (listed in ``skipped``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from w2v.config import field, size
from w2v.data.collate import crop_offsets
from w2v.data.config import SourceConfig
from w2v.data.dataset import IndexBatch
from w2v.data.dictionary import Dictionary
from w2v.data.sampler import BucketBatchSampler
from w2v.data.skips import SkipRecord
from w2v.errors import DataError
from w2v.interfaces import Batch, DataSource, Signal

DICT_FILE = "dict.src.txt"
#: Written beside exported units: how they were made (groups, frame stride, sample rate).
META_FILE = "units.json"


def read_lines(path: str | Path) -> list[str]:
    """The lines of a token file (DataError naming how to make it when it is missing)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"unit file `{path}` does not exist.",
                        hint="Run the `export_units` stage (or `w2vrun export-units`) first, or "
                             "point `data.path` at a directory of `<split>.<ext>` files.") \
            from None


class UnitDataset(torch.utils.data.Dataset):
    """Lines of a ``.src`` file as id tensors; lines shorter than ``min_len`` are left out.

    Attributes:
        rows: ``[N]`` line index (0-based, = manifest row) of each kept sequence.
        sizes: ``[N]`` tokens per kept sequence.
    """

    def __init__(self, path: str | Path, dictionary: Dictionary, *, min_len: int = 1,
                 bad_input: str = "fail") -> None:
        self.path = str(path)
        self.dictionary = dictionary
        self.skipped: list[SkipRecord] = []
        lines = read_lines(path)
        # as fairseq-preprocess: a token outside the dictionary (a unit the dictionary's
        # split never produced) is <unk>
        ids = [dictionary.encode(line.split()) for line in lines]
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        keep = np.flatnonzero(lengths >= max(min_len, 1))
        self.skipped += [SkipRecord(path=self.path, source=self.path, line=int(r) + 1,
                                    reason="below-min-size",
                                    detail=f"{lengths[r]} < {max(min_len, 1)} tokens")
                         for r in np.flatnonzero(lengths < max(min_len, 1))]
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


def load_unit_dictionary(units_dir: str | Path, ext: str = "src") -> Dictionary:
    from w2v.data.labels import load_dictionary

    return load_dictionary(str(Path(units_dir) / f"dict.{ext}.txt"))


class UnitLoader(torch.utils.data.DataLoader):
    """A DataLoader of unit batches; :attr:`skipped` lists the lines left out."""

    @property
    def skipped(self) -> list[SkipRecord]:
        return list(self.dataset.skipped)


def build_unit_loader(units_dir: str | Path, split: str, dictionary: Dictionary, *,
                      max_tokens: int, max_len: int, min_len: int = 1, seed: int = 1,
                      train: bool = True, shuffle: bool = True, rank: int = 0,
                      world_size: int = 1, epoch: int = 0, ext: str = "src",
                      bad_input: str = "fail"):
    """``(DataLoader of Batch, BucketBatchSampler)`` over ``<units_dir>/<split>.<ext>``."""
    if max_tokens < max_len:
        raise DataError(f"max_tokens ({max_tokens}) must be at least max_len ({max_len}) so one "
                        "sequence fits a batch.", key="max_tokens")
    dataset = UnitDataset(Path(units_dir) / f"{split}.{ext}", dictionary, min_len=min_len,
                          bad_input=bad_input)
    if len(dataset) == 0:
        raise DataError(f"`{dataset.path}` has no sequence of at least {min_len} units.",
                        hint="Export more (or longer) audio, or lower `min_len`.")
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=max_tokens, max_sample_size=max_len,
                                 shuffle=train and shuffle, seed=seed, rank=rank,
                                 world_size=world_size, epoch=epoch)
    collate = UnitCollater(pad_id=dictionary.pad, max_len=max_len, seed=seed, train=train)
    loader = UnitLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                        pin_memory=torch.cuda.is_available())  # the trainer copies non_blocking
    return loader, sampler


# ------------------------------------------------------------------ the source
@attrs.define(kw_only=True)
class UnitSourceConfig(SourceConfig):
    name: str = field("units", "the data source (`w2vrun list data_source`)")
    path: str = field("export_units", "the export_units stage of this recipe, or a directory "
                                      "of `<split>.<ext>` token files")
    ext: str = field("src", "token file extension: `src` (exported units), `phn` (phonemised "
                            "text), ...")
    train: str | None = field("train", "token file of the train split (`<train>.<ext>`)")
    valid: str | None = field("valid", "token file of the valid split (null: none; left out "
                                       "when the file does not exist)")
    test: str | None = field(None, "token file of the test split (null: none)")
    dictionary: str | None = field(None, "token dictionary (fairseq `symbol count` lines); null: "
                                         "`dict.<ext>.txt` beside the token files")
    max_tokens: int = size(8192, 1, 1 << 24, "tokens per batch (max length x batch size)")
    max_len: int = size(2048, 2, 1 << 20, "longer sequences are cropped to a random window")
    min_len: int = size(2, 1, 1 << 20, "shorter sequences are left out")

    def inputs(self, splits=("train",), optional=()) -> dict[str, str | None]:
        """Nothing checked ahead: ``path`` may be a stage of the recipe (checked when the
        stage runs)."""
        return {}


class UnitSource(DataSource):
    """Unit token files over a dictionary (vq-wav2vec units, phonemised text)."""

    Config = UnitSourceConfig
    no_smoke_reason = "reads unit files from disk; tests/wav2vec/test_bert.py and the " \
                      "vq-wav2vec + BERT pipeline test exercise it"

    def __init__(self, config: UnitSourceConfig) -> None:
        super().__init__(config)
        self._dictionary = None

    def file(self, split: str) -> Path:
        name = self.config.manifest(split)
        if name is None:
            raise DataError(f"no token file is set for data split `{split}`.",
                            key=f"data.{split}")
        return Path(self.config.path) / f"{name}.{self.config.ext}"

    def has_split(self, split: str) -> bool:
        if self.config.manifest(split) is None:
            return False
        return split == "train" or self.file(split).exists()

    def dictionary(self) -> Dictionary:
        from w2v.data.labels import load_dictionary

        if self._dictionary is None:
            cfg = self.config
            self._dictionary = load_dictionary(cfg.dictionary) if cfg.dictionary else \
                load_unit_dictionary(cfg.path, cfg.ext)
        return self._dictionary

    def meta(self) -> dict:
        """``units.json`` of an export (empty when absent)."""
        path = Path(self.config.path) / META_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def signal(self) -> Signal:
        meta = self.meta()
        stride = int(meta.get("stride") or 160)   # fairseq's vq-wav2vec units: 10 ms
        return Signal(kind="tokens", dim=len(self.dictionary()),
                      sample_rate=int(meta.get("sample_rate") or 16000), stride=stride,
                      receptive_field=stride)

    def dataset(self, split: str) -> UnitDataset:
        cfg = self.config
        return UnitDataset(self.file(split), self.dictionary(), min_len=cfg.min_len,
                           bad_input=cfg.bad_input)

    def loader(self, split: str, *, rank: int = 0, world_size: int = 1, epoch: int = 0,
               train: bool = True, min_samples: int = 0, dictionary: Any = None):
        cfg = self.config
        return build_unit_loader(cfg.path, cfg.manifest(split), dictionary or self.dictionary(),
                                 max_tokens=cfg.max_tokens, max_len=cfg.max_len,
                                 min_len=cfg.min_len, seed=cfg.seed, train=train,
                                 shuffle=cfg.shuffle, rank=rank, world_size=world_size,
                                 epoch=epoch, ext=cfg.ext, bad_input=cfg.bad_input)
