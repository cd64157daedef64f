"""A manifest (plus optional labels) as a map-style dataset of checked waveforms.

Cheap problems are found when the dataset is built (manifest sample counts
against ``min_sample_size`` and the receptive field, label alignment,
dictionary coverage); problems in the audio itself when a file is read. Each
bad input is handled by the ``bad_input`` policy: ``fail`` raises
:class:`~w2v.errors.DataError` naming the file and manifest line, ``skip``
leaves it out and records a :class:`~w2v.data.skips.SkipRecord`.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConfigError, did_you_mean
from .audio import read_audio
from .labels import encode_labels, read_label_lines
from .manifest import Manifest, read_manifest
from .skip_budget import missing_files
from .skips import BadInput, SkipRecord, handle, write_skip_report

log = logging.getLogger(__name__)

__all__ = ["AudioDataset", "IndexBatch", "write_skip_report"]


class IndexBatch(list):
    """Dataset positions of one batch, with the epoch (drives random crops in workers) and
    whether the batch is a repeat that only evens out the per-rank batch count."""

    def __init__(self, indices: Sequence[int] = (), epoch: int = 0, repeat: bool = False):
        super().__init__(indices)
        self.epoch = epoch
        self.repeat = repeat


def _missing(m: Manifest, keep: np.ndarray) -> np.ndarray:
    """``[N]`` bool: kept rows of ``m`` whose audio file does not exist."""
    rows = np.flatnonzero(keep)
    out = np.zeros(len(m), dtype=bool)
    out[rows] = missing_files([m.audio_path(int(r)) for r in rows])
    return out


class AudioDataset(torch.utils.data.Dataset):
    """Utterances of a manifest, read and checked on access.

    Args:
        manifest: a :class:`Manifest` or the path of a ``.tsv``.
        sample_rate: rate the waveforms are returned at (others are resampled).
        min_samples: fewest samples the model accepts (its receptive field);
            shorter utterances are bad inputs.
        min_sample_size: shorter utterances (by the manifest) are left out.
        max_sample_size: with labels, longer utterances are left out (labelled
            audio is never cropped); ignored without labels.
        labels: label file aligned with the manifest (``train.ltr``), or None.
        label_lines: the label lines themselves instead of a file (sources whose
            transcripts live elsewhere, e.g. Kaldi ``text``), one per manifest row;
            ``labels`` then names where they came from (for messages).
        dictionary: encodes the labels (``index``, ``in``, ``pad``); required with labels.
        bad_input: ``fail`` or ``skip``.

    Items (``dataset[i]``) are dicts: ``id`` (manifest row, int), ``wave``
    (``[S]`` float32), ``target`` (``[L]`` int64, or None); a skipped input is
    ``{"id", "bad": BadInput}`` instead.
    """

    def __init__(self, manifest: Manifest | str, *, sample_rate: int = 16000,
                 min_samples: int = 0, min_sample_size: int = 0,
                 max_sample_size: int | None = None, labels: str | None = None,
                 dictionary: Any = None, bad_input: str = "fail",
                 label_lines: Sequence[str] | None = None):
        if bad_input not in ("fail", "skip"):
            raise ConfigError(f"unknown bad-input policy `{bad_input}`.", key="bad_input",
                              hint=did_you_mean(bad_input, ["fail", "skip"]))
        self.manifest = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
        self.sample_rate = sample_rate
        self.min_samples = min_samples
        self.bad_input = bad_input
        self.label_path = labels
        self.pad_id = int(getattr(dictionary, "pad", 1))
        #: inputs left out at construction (filters and bad inputs under ``skip``)
        self.skipped: list[SkipRecord] = []
        self._logged_rates: set[int] = set()

        m = self.manifest
        sizes = m.sizes
        keep = np.ones(len(m), dtype=bool)
        self._filter(keep, sizes < min_sample_size, "below-min-size",
                     lambda r: f"{sizes[r]} < {min_sample_size} samples")
        self._check(keep, sizes == 0, lambda r: BadInput("empty", m.audio_path(r), "0 samples "
                                                         "in the manifest"))
        self._check(keep, (sizes > 0) & (sizes < min_samples),
                    lambda r: BadInput("too-short", m.audio_path(r),
                                       f"{sizes[r]} samples, the model needs at least "
                                       f"{min_samples}"))
        if type(m) is Manifest:  # a plain manifest lists files nobody has looked at yet
            self._check(keep, _missing(m, keep), lambda r: BadInput("missing", m.audio_path(r)))
        self._tokens = self._offsets = None
        if labels is not None:
            if dictionary is None:
                raise ConfigError("labels need a dictionary to encode them.", key="dictionary")
            if max_sample_size is not None:
                self._filter(keep, sizes > max_sample_size, "above-max-size",
                             lambda r: f"{sizes[r]} > {max_sample_size} samples")
            lines = read_label_lines(labels, m) if label_lines is None else list(label_lines)
            self._tokens, self._offsets, bad = encode_labels(lines, dictionary, labels, m)
            unknown = np.zeros(len(m), dtype=bool)
            unknown[list(bad)] = True
            self._check(keep, unknown, bad.__getitem__, locate=False)
        self.rows = np.flatnonzero(keep).astype(np.int64)
        self.sizes = sizes[self.rows]
        if len(self.skipped):
            log.warning("%s: left out %d of %d utterances at load time (%s)", m.path,
                        len(self.skipped), len(m), ", ".join(sorted({s.reason for s in
                                                                     self.skipped})))

    # ------------------------------------------------------------------ construction checks
    def _filter(self, keep: np.ndarray, mask: np.ndarray, reason: str, detail) -> None:
        """Leave out ``mask`` rows (a configured filter, not an error)."""
        for r in np.flatnonzero(mask & keep):
            self.skipped.append(SkipRecord(path=self.manifest.audio_path(r),
                                           source=self.manifest.path,
                                           line=int(self.manifest.lines[r]), reason=reason,
                                           detail=detail(r)))
        keep &= ~mask

    def _check(self, keep: np.ndarray, mask: np.ndarray, make_bad, locate: bool = True) -> None:
        """Apply the bad-input policy to ``mask`` rows."""
        for r in np.flatnonzero(mask & keep):
            bad = make_bad(int(r))
            handle(bad.at(self.manifest.where(r)) if locate else bad, self.bad_input,
                   self.skipped)
        keep &= ~mask

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.rows)

    def target(self, i: int) -> torch.Tensor | None:
        """Label ids ``[L]`` of dataset position ``i``, or None without labels."""
        if self._tokens is None:
            return None
        row = self.rows[i]
        return torch.from_numpy(self._tokens[self._offsets[row]:self._offsets[row + 1]])

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        m = self.manifest
        try:
            wave, rate = self.read(row)
        except BadInput as bad:
            return {"id": row, "bad": bad.at(m.where(row))}
        if rate != self.sample_rate and rate not in self._logged_rates:
            self._logged_rates.add(rate)
            log.warning("%s: resampling files at %d Hz to %d Hz (first: %s); batch budgets use "
                        "the manifest's counts at the file rate", m.path, rate, self.sample_rate,
                        m.audio_path(row))
        return {"id": row, "wave": wave, "target": self.target(i)}

    def read(self, row: int) -> tuple[torch.Tensor, int]:
        """``(wave [S], file rate)`` of manifest row ``row``; raises BadInput. Sources that
        keep audio elsewhere than in files (Hugging Face datasets) override it."""
        m = self.manifest
        start, stop = m.segment(row)
        return read_audio(m.audio_path(row), sample_rate=self.sample_rate,
                          min_samples=self.min_samples, expected_samples=int(m.sizes[row]),
                          start=start, stop=stop)

    def __getitems__(self, indices: Sequence[int]) -> IndexBatch:
        """Items of one batch, keeping the batch's epoch and repeat flag (for the collater)."""
        items = IndexBatch([self[i] for i in indices], getattr(indices, "epoch", 0),
                           getattr(indices, "repeat", False))
        return items
