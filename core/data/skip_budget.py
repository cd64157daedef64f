"""``bad_input: skip`` must not train on nothing: the share of a split that may be left out.

Bad inputs of a split (missing, unreadable, silent, ... files: every
:data:`~w2v.data.skips.REASONS` except the configured length filters) are
counted per distinct manifest line, at load time and as files are read. When
more than ``data.max_skipped`` of the split's utterances are bad, or none is
usable, the run stops with a :class:`~w2v.errors.DataError` naming the
counts, reasons and a few of the files.

Missing files of a plain manifest are found at load time (one directory
listing per audio folder), so the count is exact before any training.
"""

from __future__ import annotations

import collections
import os
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError
from .skips import SkipRecord

#: Reasons that are configured length filters, not broken inputs.
FILTERS = frozenset({"below-min-size", "above-max-size"})


def missing_files(paths: Sequence[str]) -> np.ndarray:
    """``[N]`` bool: which of ``paths`` do not exist (each folder is listed once)."""
    listings: dict[str, set[str] | None] = {}
    missing = np.zeros(len(paths), dtype=bool)
    for i, path in enumerate(paths):
        folder, name = os.path.split(path)
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(folder or "."))
            except OSError:
                listings[folder] = None
        names = listings[folder]
        # a name the listing lacks may still open (case-insensitive file systems)
        missing[i] = (names is None or name not in names) and not os.path.exists(path)
    return missing


def _describe(records: Sequence[SkipRecord], limit: int = 3) -> str:
    counts = collections.Counter(r.reason for r in records)
    reasons = ", ".join(f"{n} {reason}" for reason, n in counts.most_common())
    examples = "; ".join(f"{r.path} (line {r.line}: {r.reason})" for r in records[:limit])
    more = f"; ... ({len(records) - limit} more)" if len(records) > limit else ""
    return f"{reasons}: {examples}{more}"


class SkipBudget:
    """Counts one split's distinct bad inputs and stops the run when there are too many.

    Args:
        source: the manifest (or table) the split comes from, for messages.
        total: utterances the split lists.
        max_skipped: the largest share of ``total`` that may be bad (``data.max_skipped``).
        key: the recipe key of the split (``data.train``).
        world_size: ranks reading disjoint shares of the split (read-time counts are
            scaled by it; exact with one process).
        root: the manifest's audio root, named when it does not exist.
    """

    def __init__(self, source: str, total: int, max_skipped: float, *, key: str | None = None,
                 world_size: int = 1, root: str | None = None) -> None:
        self.source = source
        self.total = total
        self.max_skipped = max_skipped
        self.key = key
        self.world_size = max(world_size, 1)
        self.root = root
        self._at_load: dict[tuple[str, int, str], SkipRecord] = {}
        self._read: dict[tuple[str, int, str], SkipRecord] = {}

    @staticmethod
    def _bad(records: Iterable[SkipRecord]) -> dict[tuple[str, int, str], SkipRecord]:
        return {(r.source, r.line, r.path): r for r in records if r.reason not in FILTERS}

    @property
    def bad(self) -> int:
        """Distinct bad inputs so far (read-time ones scaled to the whole split)."""
        return len(self._at_load) + len(self._read) * self.world_size

    def at_load(self, records: Iterable[SkipRecord], usable: int) -> None:
        """Check the inputs left out while loading the split (``usable`` utterances remain)."""
        self._at_load = self._bad(records)
        self._check(usable_left=usable)

    def read(self, records: Iterable[SkipRecord]) -> None:
        """Count inputs found bad while reading; raise when over budget."""
        new = {k: r for k, r in self._bad(records).items()
               if k not in self._read and k not in self._at_load}
        if new:
            self._read.update(new)
            self._check(usable_left=None)

    def nothing_usable(self, batches: int) -> None:
        """A whole pass over this rank's share gave ``batches`` batches, all of them empty."""
        self._raise(f"every utterance of `{self.source}` read in a whole pass ({batches} "
                    f"batches) was a bad input, so there is nothing to train on",
                    nothing_left=True)

    def _check(self, usable_left: int | None) -> None:
        limit = self.max_skipped * self.total
        exact = len(self._at_load) + len(self._read) if self.world_size == 1 else 0
        if (usable_left == 0 and self._at_load) or exact >= self.total > 0:
            self._raise(f"none of the {self.total} utterances of `{self.source}` is usable",
                        nothing_left=True)
        elif self.bad > limit:
            share = self.bad / max(self.total, 1)
            estimate = " (counted on this rank, scaled by the number of ranks)" \
                if self._read and self.world_size > 1 else ""
            self._raise(f"{self.bad} of the {self.total} utterances of `{self.source}` "
                        f"({share:.0%}) are bad inputs{estimate}, more than `data.max_skipped` "
                        f"allows ({self.max_skipped:.0%})")

    def _raise(self, what: str, nothing_left: bool = False) -> None:
        records = sorted(list(self._at_load.values()) + list(self._read.values()),
                         key=lambda r: (r.source, r.line))
        listing = f" ({_describe(records)})" if records else ""
        root = ""
        if self.root is not None and not os.path.isdir(self.root):
            root = f" The manifest's audio root `{self.root}` (its first line) does not exist."
        hint = "Fix the files or the manifest (`w2vrun manifest AUDIO_DIR` remakes it)"
        if not nothing_left:
            hint += ", or raise `data.max_skipped` (a fraction; 1.0: no limit) to train on " \
                    "what is left"
        raise DataError(f"{what}{listing}.{root}", key=self.key, hint=hint + ".")
