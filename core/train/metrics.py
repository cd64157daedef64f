"""Meters and outputs: ``metrics.jsonl``, TensorBoard (when installed), progress on the console.

Every logged line is one JSON object with ``stage``, ``split`` (``train`` or
``valid``), ``step`` (updates done), ``epoch`` and ``loss`` (per sample-size
unit, in the objective's units), plus the objective's stats; train lines add
``lr``, ``step_time_s``, ``grad_norm`` and, in fp16, ``loss_scale``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, TextIO

from .progress import Progress


def is_summed(name: str) -> bool:
    """Stats summed rather than averaged: counts (``*_sum``, ``*_count``, ``n_*``)."""
    return name.endswith("_sum") or name.endswith("_count") or name.startswith("n_")


class WeightedMeter:
    """Aggregates stats over batches: weighted by sample size, counts summed.

    ``add({"accuracy": 0.5, "errors_sum": 3}, weight=120)`` then ``result()``
    gives the sample-size-weighted mean of ``accuracy`` and the total of
    ``errors_sum``.
    """

    def __init__(self) -> None:
        self.weight = 0.0
        self.sums: dict[str, float] = {}

    def add(self, stats: Mapping[str, float], weight: float) -> None:
        self.weight += weight
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + (v if is_summed(k) else v * weight)

    def merge(self, other: "WeightedMeter") -> None:
        self.weight += other.weight
        for k, v in other.sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def result(self) -> dict[str, float]:
        w = self.weight if self.weight > 0 else 1.0
        return {k: (v if is_summed(k) else v / w) for k, v in self.sums.items()}

    def state(self) -> tuple[float, dict[str, float]]:
        return self.weight, dict(self.sums)

    @classmethod
    def from_state(cls, state: tuple[float, dict[str, float]]) -> "WeightedMeter":
        m = cls()
        m.weight, m.sums = state[0], dict(state[1])
        return m


class TrainMeter:
    """What the train line of one log interval reports."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.stats = WeightedMeter()
        self.loss_sum = 0.0
        self.sample_size = 0.0
        self.updates = 0
        self.time_s = 0.0
        self.grad_norm_sum = 0.0

    def add(self, *, loss_sum: float, sample_size: float, grad_norm: float, time_s: float,
            stats: Mapping[str, float]) -> None:
        self.loss_sum += loss_sum
        self.sample_size += sample_size
        self.updates += 1
        self.time_s += time_s
        self.grad_norm_sum += grad_norm
        self.stats.add(stats, sample_size)

    def result(self) -> dict[str, float]:
        n = max(self.updates, 1)
        out = {"loss": self.loss_sum / max(self.sample_size, 1e-12),
               "sample_size": self.sample_size / n, "step_time_s": self.time_s / n,
               "grad_norm": self.grad_norm_sum / n}
        for k, v in self.stats.result().items():
            out.setdefault(k, v)
        return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


class MetricsLog:
    """Appends records to ``metrics.jsonl``, TensorBoard and the console (main rank only).

    Args:
        path: the JSONL file (appended; several stages share one).
        tensorboard_dir: where TensorBoard events go, if TensorBoard is importable.
        enabled: False on ranks other than 0.
        console: stream for progress (bars on a terminal, plain lines otherwise; see
            :class:`~w2v.train.progress.Progress`).
        total, initial: updates of the stage and those already done.
        stage: the stage id.
        micro_batches: micro-batches per update (a second bar on a terminal when > 1).
    """

    def __init__(self, path: Path | None, *, tensorboard_dir: Path | None = None,
                 enabled: bool = True, console: TextIO | None = None, total: int = 0,
                 initial: int = 0, stage: str = "", micro_batches: int = 1) -> None:
        self.enabled = enabled
        self.path = Path(path) if path is not None else None
        self.stage = stage
        self.console = console if console is not None else sys.stderr
        self._file = None
        self._tb = None
        self.progress = Progress(stage=stage, total=total, initial=initial,
                                 micro_batches=micro_batches, stream=self.console,
                                 enabled=enabled)
        if not enabled:
            return
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(log_dir=str(tensorboard_dir))
            except ImportError:
                self._tb = None

    def write(self, record: Mapping[str, Any]) -> None:
        """One JSON line (and TensorBoard scalars) for a train or valid record."""
        if not self.enabled:
            return
        record = _json_safe(dict(record))
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self._tb is not None:
            split = record.get("split", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self._tb.add_scalar(f"{split}/{k}", v, record.get("step", 0))
        self.show(record)

    def show(self, record: Mapping[str, Any]) -> None:
        """A progress update: the bar's postfix on a TTY, one plain line otherwise."""
        keys = ("loss", "lr", "grad_norm", "step_time_s", "loss_scale")
        parts = [f"{k} {_fmt(record[k])}" for k in keys if record.get(k) is not None]
        split = record.get("split", "train")
        if self.progress.active:
            if split == "train":
                self.progress.postfix(", ".join(parts))
            else:
                self.progress.write(f"[{self.stage}] valid @ {record.get('step')}: " +
                                    ", ".join(f"{k} {_fmt(v)}" for k, v in record.items()
                                              if isinstance(v, float)))
            return
        extra = "" if split == "train" else " valid"
        print(f"[{self.stage}]{extra} update {record.get('step')}: " + " | ".join(
            parts if split == "train" else
            [f"{k} {_fmt(v)}" for k, v in record.items() if isinstance(v, float)]),
            file=self.console, flush=True)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(n)

    def message(self, text: str) -> None:
        """A line that does not disturb the progress bar."""
        if self.enabled:
            self.progress.write(text)

    def close(self) -> None:
        self.progress.close()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)
