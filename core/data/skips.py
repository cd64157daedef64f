"""Bad inputs and the ``fail`` / ``skip`` policy.

Readers raise :class:`BadInput` (what is wrong, which file, which manifest
line). The dataset turns it into a :class:`~w2v.errors.DataError` under the
``fail`` policy, or into a :class:`SkipRecord` under ``skip``; the caller
writes the records to ``<run_dir>/skipped.tsv`` with :func:`write_skip_report`.
"""

from __future__ import annotations

import collections
import os
from typing import Iterable

import attrs

from ..errors import DataError

#: Short reason codes used in ``skipped.tsv`` and summaries.
REASONS = {
    "missing": "file not found",
    "unreadable": "file cannot be decoded",
    "truncated": "file is truncated",
    "empty": "file has no samples",
    "silent": "every sample is zero",
    "non-finite": "samples are NaN or infinite",
    "out-of-range": "samples far beyond full scale",
    "cancelled": "the channels cancel out when mixed to mono",
    "too-short": "shorter than the encoder's receptive field",
    "size-mismatch": "sample count differs from the manifest",
    "unknown-symbol": "label has symbols outside the dictionary",
    "empty-label": "label line has no symbols",
    "below-min-size": "shorter than data.min_sample_size",
    "above-max-size": "labelled and longer than data.max_sample_size (labelled audio is not "
                      "cropped)",
}


class BadInput(Exception):
    """One input the data pipeline cannot use.

    Args:
        reason: a key of :data:`REASONS` (``missing``, ``silent``, ...).
        path: the audio or label file.
        detail: specifics ("NaN at sample 17", "symbol `Q` on line 4").
        where: ``manifest.tsv:LINE`` of the utterance, when known.
    """

    def __init__(self, reason: str, path: str, detail: str = "", where: str | None = None):
        self.reason = reason
        self.path = path
        self.detail = detail
        self.where = where
        super().__init__(self.describe())

    def at(self, where: str) -> "BadInput":
        """A copy located at the manifest line ``where``."""
        return BadInput(self.reason, self.path, self.detail, where)

    def describe(self) -> str:
        text = f"{self.path}: {REASONS.get(self.reason, self.reason)}"
        return text + (f" ({self.detail})" if self.detail else "") + "."

    def to_error(self) -> DataError:
        """The DataError the ``fail`` policy raises."""
        return DataError(self.describe(), where=self.where,
                         hint="Fix or remove the entry, or set `data.bad_input: skip` to leave "
                              "bad inputs out (they are listed in <run_dir>/skipped.tsv).")

    def to_record(self) -> "SkipRecord":
        manifest, _, line = (self.where or "").rpartition(":")
        return SkipRecord(path=self.path, source=manifest,
                          line=int(line) if line.isdigit() else 0,
                          reason=self.reason, detail=self.detail)

    def __reduce__(self):  # picklable across DataLoader workers
        return BadInput, (self.reason, self.path, self.detail, self.where)


@attrs.frozen(kw_only=True)
class SkipRecord:
    """One left-out input.

    Attributes:
        path: the audio file.
        source: the manifest (or label file) that lists it; ``line`` is 1-based there.
        reason: a key of :data:`REASONS`; ``detail``: specifics.
    """

    path: str
    source: str
    line: int
    reason: str
    detail: str = ""


def handle(bad: BadInput, policy: str, skipped: list[SkipRecord]) -> None:
    """Apply the bad-input ``policy``: raise (``fail``) or record into ``skipped``."""
    if policy == "fail":
        raise bad.to_error() from None
    skipped.append(bad.to_record())


def write_skip_report(skips: Iterable[SkipRecord], run_dir: str) -> str:
    """Write ``<run_dir>/skipped.tsv`` (one row per distinct input) and return a one-line summary.

    Records repeat when an input is re-read in a later epoch; each (manifest,
    line, path) is written once.
    """
    unique: dict[tuple[str, int, str], SkipRecord] = {}
    for rec in skips:
        unique.setdefault((rec.source, rec.line, rec.path), rec)
    rows = [unique[k] for k in sorted(unique)]
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "skipped.tsv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("source\tline\tpath\treason\tdetail\n")
        for r in rows:
            detail = r.detail.replace("\t", " ").replace("\n", " ")
            f.write(f"{r.source}\t{r.line}\t{r.path}\t{r.reason}\t{detail}\n")
    if not rows:
        return "no inputs skipped."
    counts = collections.Counter(r.reason for r in rows)
    parts = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
    noun = "input" if len(rows) == 1 else "inputs"
    return f"skipped {len(rows)} {noun} ({parts}); list in {path}."
