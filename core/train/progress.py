"""Progress of a training stage on the console.

On a terminal: a tqdm bar over the stage's updates (rate and ETA) and, when an
update accumulates several micro-batches, a second bar over the micro-batches
of the update in flight, so a 64-micro-batch update on a CPU visibly moves.
When stderr is not a terminal, or under CI (``CI`` set, as GitHub Actions and
GitLab do), the bars are off and the first completed update prints one line
with its time and the time the rest will take at that pace; the metrics lines
follow every ``log_interval`` updates.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from .batch_plan import format_duration


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def bars_wanted(stream: TextIO) -> bool:
    """Bars on a terminal, except under CI (``CI`` set to anything but ``0``/``false``)."""
    ci = os.environ.get("CI", "").strip().lower()
    return is_tty(stream) and ci in ("", "0", "false")


class Progress:
    """A stage's update bar and micro-batch bar (or plain lines; see the module docstring).

    Args:
        stage: the stage id (the bar's label and the lines' prefix).
        total: updates the stage runs.
        initial: updates already done (a resumed run).
        micro_batches: micro-batches per update (a second bar when > 1).
        stream: where to draw (default stderr).
        enabled: False on ranks other than 0 (nothing is drawn or printed).
    """

    def __init__(self, *, stage: str, total: int, initial: int = 0, micro_batches: int = 1,
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stage = stage
        self.total = total
        self.initial = initial
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self._bar: Any = None
        self._inner: Any = None
        self._timed_first = False
        if not (enabled and bars_wanted(self.stream)):
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, initial=initial, desc=stage or "train", unit="upd",
                         file=self.stream, dynamic_ncols=True, smoothing=0.1)
        if micro_batches > 1:
            self._inner = tqdm(total=micro_batches, desc="  micro-batches", unit="batch",
                               file=self.stream, dynamic_ncols=True, position=1, leave=False,
                               mininterval=0)        # a micro-batch of a long update is slow

    @property
    def active(self) -> bool:
        """Whether bars are drawn (else callers print plain lines)."""
        return self._bar is not None

    def micro_batch_done(self) -> None:
        if self._inner is not None:
            self._inner.update(1)

    def update_done(self, seconds: float, updates_done: int) -> None:
        """One update finished in ``seconds``; ``updates_done`` counts all so far."""
        if self._bar is not None:
            self._bar.update(1)
            if self._inner is not None:
                self._inner.reset()
            return
        if self.enabled and not self._timed_first:
            self._timed_first = True
            left = self.total - updates_done
            pace = f"; the {left:,} left take about {format_duration(left * seconds)} at this " \
                   "pace" if left > 0 else ""
            self.write(f"[{self.stage}] update {updates_done:,} of {self.total:,} took "
                       f"{format_duration(seconds)} (start-up included){pace}.")

    def postfix(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def write(self, text: str) -> None:
        """A line that does not disturb the bars."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        for bar in (self._inner, self._bar):
            if bar is not None:
                bar.close()
        self._inner = self._bar = None
