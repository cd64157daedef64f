"""Reading featurize outputs back, and batching them with labels for a downstream model.

A featurize output (``w2vrun featurize``, the ``featurize_audio`` and
``featurize_units`` stages) holds, per split ``NAME`` and shard ``S`` of ``N``:
``NAME_S_N.npy`` (``[frames, D]`` fp16, utterances back to back),
``NAME_S_N.len`` (frames per utterance), ``NAME_S_N.tsv`` (the manifest rows of
the shard) and ``NAME_S_N.done``. Shard ``S`` holds manifest rows
``S, S + N, S + 2N, ...``; :func:`load_features` puts them back in manifest
order. ``features.json`` beside them (written by the stages) records the width,
frame stride and what made them.

:class:`LabelledFeatures` pairs those frames with a label file: the manifest
the labels belong to must list exactly the rows the features were made from
(checked, so a model never trains on features of one file and labels of another).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

import attrs
import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from w2v.data.dataset import IndexBatch
from w2v.data.sampler import BucketBatchSampler
from w2v.errors import DataError
from w2v.interfaces import Batch

log = logging.getLogger("w2v")

META_FILE = "features.json"
_SHARD = re.compile(r"^(?P<name>.+)_(?P<shard>\d+)_(?P<shards>\d+)\.npy$")


@attrs.define(kw_only=True)
class FeatureSet:
    """One featurized split in manifest order.

    Attributes:
        name: the split name (file prefix).
        arrays: the shards' ``[frames, D]`` arrays (memory-mapped).
        index: ``[N, 3]`` int64 per manifest row: shard, first frame, frame count.
        root: the manifest's audio root (None when the output has no ``.tsv``).
        entries: ``(relative path, samples)`` per row (empty without ``.tsv``).
        meta: ``features.json`` (empty when absent).
    """

    name: str
    arrays: list[np.ndarray]
    index: np.ndarray
    root: str | None
    entries: list[tuple[str, int]]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def dim(self) -> int:
        return int(self.arrays[0].shape[1]) if self.arrays and self.arrays[0].ndim == 2 else \
            int(self.meta.get("dim", 0))

    @property
    def lengths(self) -> np.ndarray:
        return self.index[:, 2]

    def frames(self, row: int) -> np.ndarray:
        shard, start, n = (int(v) for v in self.index[row])
        return self.arrays[shard][start:start + n]


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def feature_splits(directory: str | Path) -> list[str]:
    """Names of the featurized splits in ``directory``."""
    names = {m["name"] for p in Path(directory).glob("*.npy") if (m := _SHARD.match(p.name))}
    return sorted(names)


def load_features(directory: str | Path, name: str) -> FeatureSet:
    """The features of split ``name`` in ``directory`` (every shard, manifest order)."""
    from w2v.data.manifest import read_manifest

    directory = Path(directory)
    shards = sorted((int(m["shard"]), int(m["shards"]), p) for p in directory.glob(f"{name}_*.npy")
                    if (m := _SHARD.match(p.name)) and m["name"] == name)
    if not shards:
        raise DataError(f"`{directory}` has no features of split `{name}` ({name}_S_N.npy).",
                        hint=f"Featurized splits there: {feature_splits(directory) or 'none'}. "
                             "Run the featurize stage (or `w2vrun featurize`) for it.")
    total = {n for _, n, _ in shards}
    if len(total) != 1 or [s for s, _, _ in shards] != list(range(next(iter(total)))):
        raise DataError(f"`{directory}`: the shards of `{name}` are incomplete or mixed "
                        f"({', '.join(p.name for _, _, p in shards)}).",
                        hint="Featurize every shard (ids 0..N-1 of one N) again.")
    num = next(iter(total))
    arrays, per_shard, rows, root = [], [], [], None
    for shard, _, npy in shards:
        stem = npy.with_suffix("")
        if not stem.with_suffix(".done").exists():
            raise DataError(f"`{npy}` has no `.done` marker: its featurization did not finish.",
                            hint="Run the featurize stage (or command) again.")
        array = np.load(npy, mmap_mode="r")
        try:
            lengths = np.array([int(x) for x in stem.with_suffix(".len").read_text().split()],
                               dtype=np.int64)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read `{stem.with_suffix('.len')}` ({exc}).") from None
        if lengths.sum() != array.shape[0]:
            raise DataError(f"`{stem.with_suffix('.len')}` counts {int(lengths.sum())} frames but "
                            f"`{npy.name}` holds {array.shape[0]}.")
        if array.ndim != 2:
            raise DataError(f"`{npy}` holds an array of shape {list(array.shape)}; a downstream "
                            "model needs [frames, D] (featurize one layer, not several).")
        arrays.append(array)
        per_shard.append(lengths)
        tsv = stem.with_suffix(".tsv")
        if tsv.exists():
            manifest = read_manifest(str(tsv))
            if len(manifest) != len(lengths):
                raise DataError(f"`{tsv}` lists {len(manifest)} rows but `{stem.name}.len` has "
                                f"{len(lengths)}.")
            root = manifest.root
            rows.append(manifest.entries())
        else:
            rows.append(None)
    count = sum(len(x) for x in per_shard)
    index = np.zeros((count, 3), dtype=np.int64)
    entries: list[tuple[str, int]] = [("", 0)] * count if all(r is not None for r in rows) else []
    for shard, lengths in enumerate(per_shard):
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
        positions = np.arange(shard, shard + num * len(lengths), num)
        if len(positions) and positions[-1] >= count:
            raise DataError(f"`{directory}`: shard {shard} of `{name}` holds more rows than a "
                            f"{num}-way split of {count} rows allows.")
        index[positions] = np.stack([np.full(len(lengths), shard), starts, lengths], axis=1)
        if entries:
            for pos, entry in zip(positions.tolist(), rows[shard]):
                entries[pos] = entry
    return FeatureSet(name=name, arrays=arrays, index=index, root=root, entries=entries,
                      meta=read_meta(directory))


def check_aligned(features: FeatureSet, manifest, what: str) -> None:
    """DataError unless ``features`` were made from exactly the rows of ``manifest``."""
    if len(features) != len(manifest):
        raise DataError(f"the features `{features.name}` have {len(features)} utterances but "
                        f"manifest `{manifest.path}` has {len(manifest)}; they must be the same "
                        f"rows ({what}).", hint="Featurize that manifest, or point the stage at "
                                                "the features split made from it.")
    if not features.entries:
        log.warning("features `%s` carry no manifest copy (.tsv): only their count is checked "
                    "against `%s`", features.name, manifest.path)
        return
    theirs = manifest.entries()
    for row, (ours, other) in enumerate(zip(features.entries, theirs)):
        if os.path.normpath(ours[0]) != os.path.normpath(other[0]) or int(ours[1]) != int(other[1]):
            raise DataError(f"the features `{features.name}` were made from other audio than "
                            f"manifest `{manifest.path}`: row {row} is `{ours[0]}` there and "
                            f"`{other[0]}` here ({what}).",
                            where=manifest.where(row),
                            hint="Featurize that manifest, or point the stage at the features "
                                 "split made from it.")


class LabelledFeatures(torch.utils.data.Dataset):
    """Feature frames with label ids, for CTC on frozen features.

    Rows with no frames, or with labels outside the dictionary under
    ``bad_input: skip``, are left out (:attr:`skipped` says which and why).

    Attributes:
        rows: ``[N]`` manifest row of each kept utterance.
        sizes: ``[N]`` frames of each kept utterance.
    """

    def __init__(self, features: FeatureSet, tokens: np.ndarray | None, offsets: np.ndarray | None,
                 *, skip: dict[int, str] | None = None, max_frames: int | None = None) -> None:
        self.features = features
        self._tokens, self._offsets = tokens, offsets
        lengths = features.lengths
        self.skipped: dict[int, str] = dict(skip or {})
        for row in np.flatnonzero(lengths == 0).tolist():
            self.skipped.setdefault(row, "no feature frames (shorter than one frame)")
        if max_frames is not None:
            for row in np.flatnonzero(lengths > max_frames).tolist():
                self.skipped.setdefault(row, f"more than max_frames ({max_frames}) frames")
        keep = np.array([r for r in range(len(features)) if r not in self.skipped], dtype=np.int64)
        self.rows = keep
        self.sizes = lengths[keep] if len(keep) else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def target(self, row: int) -> torch.Tensor | None:
        if self._tokens is None:
            return None
        return torch.from_numpy(self._tokens[self._offsets[row]:self._offsets[row + 1]])

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        frames = torch.from_numpy(np.asarray(self.features.frames(row), dtype=np.float32))
        return {"id": row, "features": frames, "target": self.target(row)}

    def __getitems__(self, indices: Sequence[int]) -> IndexBatch:
        return IndexBatch([self[i] for i in indices], getattr(indices, "epoch", 0),
                          getattr(indices, "repeat", False))


class FeatureCollater:
    """Items -> :class:`Batch`: ``source`` ``[B, T, D]`` zero-padded, ``lengths`` ``[B]``,
    ``targets`` ``[B, L]`` padded with ``pad_id`` and ``target_lengths``."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> Batch:
        ids = torch.tensor([it["id"] for it in items], dtype=torch.long)
        frames = [it["features"] for it in items]
        lengths = torch.tensor([f.shape[0] for f in frames], dtype=torch.long)
        targets = target_lengths = None
        if items and items[0]["target"] is not None:
            labels = [it["target"] for it in items]
            target_lengths = torch.tensor([t.shape[0] for t in labels], dtype=torch.long)
            targets = pad_sequence(labels, batch_first=True, padding_value=self.pad_id)
        extra = {"repeat": True} if getattr(items, "repeat", False) else {}
        return Batch(source=pad_sequence(frames, batch_first=True), lengths=lengths, ids=ids,
                     targets=targets, target_lengths=target_lengths, extra=extra)


def labelled_features(features: FeatureSet, manifest_path: str, labels: str, dictionary, *,
                      bad_input: str = "fail", max_frames: int | None = None,
                      what: str = "") -> LabelledFeatures:
    """``features`` with the ``labels`` file beside ``manifest_path`` (rows checked to match)."""
    from w2v.data.labels import encode_labels, label_path, read_label_lines
    from w2v.data.manifest import read_manifest

    manifest = read_manifest(manifest_path)
    check_aligned(features, manifest, what)
    path = label_path(manifest_path, labels)
    tokens, offsets, bad = encode_labels(read_label_lines(path, manifest), dictionary, path,
                                         manifest)
    if bad and bad_input == "fail":
        raise next(iter(bad.values())).to_error()
    skip = {row: "label symbols outside the dictionary" for row in bad}
    return LabelledFeatures(features, tokens, offsets, skip=skip, max_frames=max_frames)


def build_feature_loader(dataset: LabelledFeatures, *, pad_id: int, max_tokens: int,
                         train: bool = True, seed: int = 1, rank: int = 0, world_size: int = 1,
                         epoch: int = 0):
    """``(DataLoader of Batch, BucketBatchSampler)``; ``max_tokens`` counts frames."""
    if len(dataset) == 0:
        raise DataError(f"the features `{dataset.features.name}` have no usable utterance "
                        f"({len(dataset.skipped)} left out).")
    longest = int(dataset.sizes.max())
    if max_tokens < longest:
        raise DataError(f"max_tokens ({max_tokens} frames) is below the longest utterance of "
                        f"`{dataset.features.name}` ({longest} frames), which must fit a batch.",
                        key="max_tokens", hint=f"Raise `max_tokens` to at least {longest}.")
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=max_tokens, shuffle=train, seed=seed,
                                 rank=rank, world_size=world_size, epoch=epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler,
                                         collate_fn=FeatureCollater(pad_id))
    return loader, sampler
