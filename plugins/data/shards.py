"""The feature shard format: one writer and one reader for every featurize path.

A featurize output (``w2vrun featurize``, the ``featurize_audio`` and
``featurize_units`` stages) holds, per split ``NAME`` and shard ``S`` of ``N``:

- ``NAME_S_N.npy``: ``[frames, D]`` fp16, every utterance's frames back to back
  (``[frames, L, D]`` when several layers are stored);
- ``NAME_S_N.len``: one line per utterance, its frame count;
- ``NAME_S_N.tsv``: the manifest rows of the shard (root line first), when known;
- ``NAME_S_N.done``: written last; a shard with it is complete.

Shard ``S`` holds manifest rows ``S, S + N, S + 2N, ...``; :func:`load_features`
puts them back in manifest order. ``features.json`` beside them records the
width, frame stride, sample rate and what made them (:func:`write_meta`).
This is the layout of HuBERT's dump scripts and what wav2vec-U reads.
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

from w2v.errors import DataError

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


# ------------------------------------------------------------------ writing
class ShardWriter:
    """Writes one shard ``<out>/<name>_<shard>_<shards>.*``: :meth:`add` each utterance's
    features in manifest order, then :meth:`finish`.

    Args:
        out_dir: output directory (made if needed).
        name: split name (file prefix).
        shard, shards: this shard's id and the number of shards.
        dim: feature width, for the empty array of a shard without frames.
    """

    def __init__(self, out_dir: str | Path, name: str, *, shard: int = 0, shards: int = 1,
                 dim: int = 0) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.stem = self.out_dir / f"{name}_{shard}_{shards}"
        self.dim = dim
        self._frames: list[np.ndarray] = []
        self.lengths: list[int] = []

    @property
    def done(self) -> bool:
        """True when this shard was completed before (its ``.done`` marker exists)."""
        return self.stem.with_suffix(".done").exists()

    def add(self, features: torch.Tensor | np.ndarray) -> None:
        """One utterance's features ``[T, D]`` (or ``[T, L, D]``), stored as fp16."""
        if isinstance(features, torch.Tensor):
            features = features.detach().to(torch.float16).cpu().numpy()
        self._frames.append(np.asarray(features, dtype=np.float16))
        self.lengths.append(int(features.shape[0]))

    def finish(self, root: str | None = None, entries: Sequence[tuple[str, int]] | None = None
               ) -> dict[str, int]:
        """Write the shard (``entries``: its manifest rows, for the ``.tsv``); returns
        ``{"utterances", "frames"}``."""
        from w2v.data.manifest import write_manifest

        array = np.concatenate(self._frames) if self._frames else \
            np.zeros((0, self.dim), np.float16)
        np.save(self.stem.with_suffix(".npy"), array)
        self.stem.with_suffix(".len").write_text("".join(f"{n}\n" for n in self.lengths))
        if entries is not None:
            if len(entries) != len(self.lengths):
                raise ValueError(f"{len(entries)} manifest rows for {len(self.lengths)} "
                                 "utterances")
            write_manifest(str(self.stem.with_suffix(".tsv")), root or "", entries)
        counts = {"utterances": len(self.lengths), "frames": int(sum(self.lengths))}
        self.stem.with_suffix(".done").write_text(
            f"{counts['utterances']} utterances, {counts['frames']} frames\n")
        self.shape = tuple(array.shape)
        return counts


def write_meta(out_dir: str | Path, meta: dict[str, Any]) -> None:
    """``features.json``: ``dim``, ``stride``, ``sample_rate``, what made the features,
    and per split ``{utterances, frames}`` (and ``manifest``, the audio they came from)."""
    (Path(out_dir) / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
