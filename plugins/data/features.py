"""The ``features`` data source: feature shards (a featurize output) with labels.

``data: {name: features, path: featurize, train: labeled, labels: ltr,
manifests: {train: DIR/train.tsv}}`` reads the features split ``labeled`` of the
``featurize`` stage (or of a directory) for ``data.train``, and the labels beside
the manifest the features were made from (``manifests``; default: the manifest
``features.json`` records). The manifest must list exactly the rows the features
were made from (checked, so a model never trains on one file's features and
another's labels). Batches hold ``source`` ``[B, T, D]`` float, zero-padded,
with ``lengths``; ``max_tokens`` counts frames.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import attrs
import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from w2v.config import field, size
from w2v.data.config import SourceConfig
from w2v.data.dataset import IndexBatch
from w2v.data.sampler import BucketBatchSampler
from w2v.data.skips import SkipRecord
from w2v.errors import ConfigError, DataError
from w2v.interfaces import Batch, DataSource, Signal

from .shards import FeatureSet, check_aligned, load_features

log = logging.getLogger("w2v")


class LabelledFeatures(torch.utils.data.Dataset):
    """Feature frames (with label ids, or without: ``tokens`` None).

    Rows with no frames, or with labels outside the dictionary under
    ``bad_input: skip``, are left out (:attr:`skipped`, as :class:`SkipRecord` s).

    Attributes:
        rows: ``[N]`` manifest row of each kept utterance.
        sizes: ``[N]`` frames of each kept utterance.
    """

    def __init__(self, features: FeatureSet, tokens: np.ndarray | None, offsets: np.ndarray | None,
                 *, skip: dict[int, SkipRecord] | None = None, max_frames: int | None = None,
                 source: str = "") -> None:
        self.features = features
        self._tokens, self._offsets = tokens, offsets
        lengths = features.lengths
        out: dict[int, SkipRecord] = dict(skip or {})

        def leave_out(row: int, reason: str, detail: str) -> None:
            path = features.entries[row][0] if features.entries else f"{features.name}[{row}]"
            out.setdefault(row, SkipRecord(path=path, source=source, line=row + 2,
                                           reason=reason, detail=detail))

        for row in np.flatnonzero(lengths == 0).tolist():
            leave_out(row, "too-short", "no feature frames (shorter than one frame)")
        if max_frames is not None:
            for row in np.flatnonzero(lengths > max_frames).tolist():
                leave_out(row, "above-max-size", f"more than max_frames ({max_frames}) frames")
        self.skipped: list[SkipRecord] = [out[r] for r in sorted(out)]
        keep = np.array([r for r in range(len(features)) if r not in out], dtype=np.int64)
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
    from w2v.data.skips import BadInput

    manifest = read_manifest(manifest_path)
    check_aligned(features, manifest, what)
    path = label_path(manifest_path, labels)
    tokens, offsets, bad = encode_labels(read_label_lines(path, manifest), dictionary, path,
                                         manifest)
    for row in np.flatnonzero(np.diff(offsets) == 0).tolist():   # nothing to learn from
        if row not in bad:
            bad[row] = BadInput("empty-label", manifest.audio_path(row),
                                "the label line has no symbols", where=f"{path}:{row + 1}")
    if bad and bad_input == "fail":
        raise next(iter(bad.values())).to_error()
    skip = {row: b.to_record() for row, b in bad.items()}
    return LabelledFeatures(features, tokens, offsets, skip=skip, max_frames=max_frames,
                            source=manifest_path)


class FeatureLoader(torch.utils.data.DataLoader):
    """A DataLoader of feature batches; :attr:`skipped` lists the rows left out."""

    @property
    def skipped(self) -> list[SkipRecord]:
        return list(self.dataset.skipped)


def build_feature_loader(dataset: LabelledFeatures, *, pad_id: int, max_tokens: int,
                         train: bool = True, seed: int = 1, rank: int = 0, world_size: int = 1,
                         epoch: int = 0, shuffle: bool = True):
    """``(DataLoader of Batch, BucketBatchSampler)``; ``max_tokens`` counts frames."""
    if len(dataset) == 0:
        raise DataError(f"the features `{dataset.features.name}` have no usable utterance "
                        f"({len(dataset.skipped)} left out).")
    longest = int(dataset.sizes.max())
    if max_tokens < longest:
        raise DataError(f"max_tokens ({max_tokens} frames) is below the longest utterance of "
                        f"`{dataset.features.name}` ({longest} frames), which must fit a batch.",
                        key="max_tokens", hint=f"Raise `max_tokens` to at least {longest}.")
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=max_tokens, shuffle=train and shuffle,
                                 seed=seed, rank=rank, world_size=world_size, epoch=epoch)
    loader = FeatureLoader(dataset, batch_sampler=sampler, collate_fn=FeatureCollater(pad_id),
                           pin_memory=torch.cuda.is_available())  # the trainer copies non_blocking
    return loader, sampler


# ------------------------------------------------------------------ the source
@attrs.define(kw_only=True)
class FeatureSourceConfig(SourceConfig):
    name: str = field("features", "the data source (`w2vrun list data_source`)")
    path: str = field("featurize", "the featurize stage of this recipe (featurize_audio, "
                                   "featurize_units), or a directory of feature shards")
    train: str | None = field("train", "features split (`<name>_S_N.npy`) of the train split")
    valid: str | None = field(None, "features split of the valid split (null: none)")
    test: str | None = field(None, "features split of the test split (null: none)")
    manifests: dict[str, str] = field({}, "per data split, the manifest the features were made "
                                          "from, whose labels they take (`{train: DIR/train.tsv}`"
                                          ", `CORPUS:SPLIT` allowed); default: the one "
                                          "features.json records")
    max_tokens: int = size(40000, 1, 1 << 30, "feature frames per batch (max length x batch "
                                              "size)")
    max_frames: int | None = size(None, 1, 1 << 30, "training utterances with more frames are "
                                                    "left out (null: none)")

    def __attrs_post_init__(self) -> None:
        from w2v.config import check

        super().__attrs_post_init__()
        for split in self.manifests:
            check(split in ("train", "valid", "test"), f"manifests.{split}",
                  "is not a data split (train, valid, test).")

    def inputs(self, splits=("train",), optional=()) -> dict[str, str | None]:
        """The manifests given for the splits read (``path`` may be a stage of the recipe,
        checked when the stage runs)."""
        return {f"data.manifests.{s}": self.manifests[s] for s in (*splits, *optional)
                if s in self.manifests}


class FeatureSource(DataSource):
    """Feature shards (featurize outputs) with the labels of the audio they came from."""

    Config = FeatureSourceConfig
    no_smoke_reason = "reads feature shards from disk; tests/wav2vec/test_features.py " \
                      "trains and evaluates over it"

    def __init__(self, config: FeatureSourceConfig) -> None:
        super().__init__(config)
        self._sets: dict[str, FeatureSet] = {}
        self._dictionary = None

    def has_split(self, split: str) -> bool:
        return self.config.manifest(split) is not None

    def features(self, split: str) -> FeatureSet:
        """The features of data split ``split`` (all shards, manifest order)."""
        if split not in self._sets:
            name = self.config.manifest(split)
            if name is None:
                raise DataError(f"no features split is set for data split `{split}`.",
                                key=f"data.{split}",
                                hint=f"Set `data.{split}: NAME` (the `NAME_S_N.npy` files).")
            self._sets[split] = load_features(self.config.path, name)
        return self._sets[split]

    def signal(self) -> Signal:
        feats = self.features("train")
        meta = feats.meta
        return Signal(kind="features", dim=feats.dim,
                      sample_rate=int(meta.get("sample_rate") or 16000),
                      stride=int(meta.get("stride") or 160), receptive_field=1)

    def manifest_of(self, split: str) -> str:
        """The manifest whose labels ``split`` takes."""
        from w2v.data.loader import resolve_corpus

        cfg = self.config
        if split in cfg.manifests:
            return resolve_corpus(cfg.manifests[split], f"data.manifests.{split}")
        name = cfg.manifest(split)
        recorded = (self.features(split).meta.get("splits", {}).get(name) or {}).get("manifest")
        if recorded is None:
            raise ConfigError(f"`data.labels: {cfg.labels}` needs the manifest the features "
                              f"`{name}` were made from, and features.json does not record it.",
                              key=f"data.manifests.{split}",
                              hint=f"Set `data.manifests.{split}: PATH/TO/{split}.tsv`.")
        return recorded

    def dictionary(self):
        from w2v.data.labels import dictionary_path, load_dictionary

        cfg = self.config
        if cfg.labels is None:
            return None
        if self._dictionary is None:
            self._dictionary = load_dictionary(
                cfg.dictionary or dictionary_path(self.manifest_of("train"), cfg.labels))
        return self._dictionary

    def dataset(self, split: str, *, dictionary: Any = None,
                whole: bool = False) -> LabelledFeatures:
        """The frames (and labels) of ``split``; ``whole``: no ``max_frames`` filter."""
        cfg = self.config
        feats = self.features(split)
        max_frames = None if whole or split != "train" else cfg.max_frames
        if cfg.labels is None:
            return LabelledFeatures(feats, None, None, max_frames=max_frames,
                                    source=str(cfg.path))
        return labelled_features(feats, self.manifest_of(split), cfg.labels,
                                 dictionary or self.dictionary(), bad_input=cfg.bad_input,
                                 max_frames=max_frames,
                                 what=f"features `{feats.name}` for data.{split}")

    def loader(self, split: str, *, rank: int = 0, world_size: int = 1, epoch: int = 0,
               train: bool = True, min_samples: int = 0, dictionary: Any = None):
        cfg = self.config
        dataset = self.dataset(split, dictionary=dictionary)
        dictionary = dictionary or self.dictionary()
        pad = dictionary.pad if dictionary is not None else 1
        max_tokens = cfg.max_tokens if train else max(cfg.max_tokens, int(dataset.sizes.max()))
        return build_feature_loader(dataset, pad_id=pad, max_tokens=max_tokens, train=train,
                                    seed=cfg.seed, rank=rank, world_size=world_size, epoch=epoch,
                                    shuffle=cfg.shuffle)
