"""What one update is, in audio and in passes over the data, said at the start of a stage.

A paper recipe sized for 64 GPUs (``batch_seconds: 5600``, 1.6 h of audio per
update) silently accumulates 64 micro-batches per update on one machine; on a
30-minute corpus each update then reads the data three times over. The
trainer logs :meth:`BatchPlan.summary` when it opens the training data, and
:meth:`BatchPlan.warning` (with the overrides that make the recipe fit) when
one update is larger than the data.

Example::

    plan = BatchPlan.from_loader(loader, sampler, update_freq=64, world_size=1,
                                 max_tokens=1_400_000, sample_rate=16000, batch_seconds=5600,
                                 max_updates=400_000, device="cpu")
    print(plan.summary()); print(plan.warning())
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

#: On a CPU, a micro-batch above this many samples (16 s at 16 kHz) is slow and memory-hungry.
CPU_MAX_TOKENS = 250_000
#: Fewer micro-batches per epoch than this: suggest a smaller ``data.max_tokens``.
MIN_BATCHES_PER_EPOCH = 4


def format_duration(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``1.56 h``, ``3.2 d``."""
    if seconds < 90:
        return f"{seconds:.3g} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.3g} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"


def _count(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


@attrs.frozen(kw_only=True)
class BatchPlan:
    """One update's size against the training data (this process's shard).

    Attributes:
        stage: the stage id, for the override keys.
        update_freq: micro-batches accumulated per update (per device).
        world_size: devices.
        max_tokens: samples per micro-batch at most (None: unknown, e.g. token data).
        sample_rate: samples per second of ``max_tokens`` and ``data_samples``.
        batch_seconds: ``trainer.batch_seconds`` when it derived ``update_freq``.
        batches_per_epoch: micro-batches one epoch gives each device (None: unknown).
        data_samples: samples of audio in the training data (None: not audio).
        utterances: utterances in the training data.
        largest_item: samples of the largest (cropped) utterance, which a batch must hold.
        max_updates: updates the stage runs.
        device: ``cpu``, ``cuda``, ...
    """

    stage: str
    update_freq: int
    world_size: int = 1
    max_tokens: int | None = None
    sample_rate: int | None = None
    batch_seconds: float | None = None
    batches_per_epoch: int | None = None
    data_samples: int | None = None
    utterances: int | None = None
    largest_item: int | None = None
    max_updates: int = 1
    device: str = "cpu"

    @classmethod
    def from_loader(cls, loader: Any, sampler: Any, **known: Any) -> "BatchPlan":
        """The plan of a training loader: batches per epoch from the sampler (its full
        epoch, ``plan(epoch)``, where it has one), audio from ``loader.dataset.sizes`` when
        the dataset holds waveforms (it has a ``sample_rate``)."""
        batches = None
        if sampler is not None and hasattr(sampler, "plan"):
            batches = len(sampler.plan(getattr(sampler, "epoch", 0)))
        elif sampler is not None and hasattr(sampler, "__len__"):
            batches = len(sampler)
        elif hasattr(loader, "__len__"):
            batches = len(loader)
        dataset = getattr(loader, "dataset", None)
        sizes = getattr(dataset, "sizes", None)
        extra: dict[str, Any] = {}
        if sizes is not None and getattr(dataset, "sample_rate", None):
            sizes = np.asarray(sizes)
            extra = {"data_samples": int(sizes.sum()), "utterances": int(len(sizes))}
            capped = getattr(sampler, "sizes", None)
            extra["largest_item"] = int(np.max(capped if capped is not None else sizes)) \
                if len(sizes) else None
        return cls(batches_per_epoch=batches, **extra, **known)

    # ------------------------------------------------------------------ numbers
    @property
    def seconds_per_batch(self) -> float | None:
        """Audio in one micro-batch at most (``max_tokens / sample_rate``)."""
        if not self.max_tokens or not self.sample_rate:
            return None
        return self.max_tokens / self.sample_rate

    @property
    def seconds_per_update(self) -> float | None:
        """Audio in one update at most, over all devices."""
        per_batch = self.seconds_per_batch
        return None if per_batch is None else per_batch * self.update_freq * self.world_size

    @property
    def data_seconds(self) -> float | None:
        if self.data_samples is None or not self.sample_rate:
            return None
        return self.data_samples / self.sample_rate

    @property
    def passes_per_update(self) -> float | None:
        """Epochs one update reads (``update_freq / batches_per_epoch``)."""
        if not self.batches_per_epoch:
            return None
        return self.update_freq / self.batches_per_epoch

    @property
    def too_large(self) -> bool:
        """One update reads more than the whole training data."""
        passes = self.passes_per_update
        return passes is not None and passes > 1.0

    # ------------------------------------------------------------------ text
    def summary(self) -> str:
        """One line: micro-batches and audio per update, and what that is against the data."""
        source = f"from trainer.batch_seconds {self.batch_seconds:g}" \
            if self.batch_seconds is not None else "trainer.update_freq"
        devices = f" x {self.world_size} devices" if self.world_size > 1 else ""
        text = f"one update = {self.update_freq} micro-batch{'es' if self.update_freq > 1 else ''}"\
               f" ({source}){devices}"
        if self.seconds_per_update is not None:
            text += (f", up to {format_duration(self.seconds_per_update)} of audio (a micro-batch "
                     f"holds up to {format_duration(self.seconds_per_batch)}: data.max_tokens "
                     f"{self.max_tokens:,} at {self.sample_rate} Hz)")
        text += "."
        passes = self.passes_per_update
        if passes is None:
            return text
        data = f"{format_duration(self.data_seconds)} in {self.utterances:,} utterances, " \
            if self.data_seconds is not None else ""
        text += (f" Training data: {data}{self.batches_per_epoch:,} micro-batch"
                 f"{'es' if self.batches_per_epoch != 1 else ''} per epoch"
                 f"{' per device' if self.world_size > 1 else ''}, so one update reads "
                 f"{passes:.3g} epochs")
        if passes < 1:
            text += f" (an epoch is {_count(1 / passes)} updates)"
        return text + f"; {self.max_updates:,} updates = {_count(self.max_updates * passes)} epochs."

    def fitting_overrides(self) -> list[str]:
        """Overrides that make one update at most one epoch (and, on a CPU, a micro-batch
        of at most :data:`CPU_MAX_TOKENS` samples)."""
        fit = []
        if self.batch_seconds is not None:
            fit.append("trainer.batch_seconds=null")
        elif self.update_freq > 1:
            fit.append("trainer.update_freq=1")
        tokens = self.max_tokens
        if tokens and self.device == "cpu" and tokens > CPU_MAX_TOKENS:
            tokens = CPU_MAX_TOKENS
        if tokens and self.batches_per_epoch is not None and \
                self.batches_per_epoch < MIN_BATCHES_PER_EPOCH and self.data_samples:
            tokens = min(tokens, self.data_samples // (MIN_BATCHES_PER_EPOCH * self.world_size))
        if tokens and tokens != self.max_tokens:
            tokens = max(tokens, 1)
            if self.largest_item and tokens < self.largest_item:
                fit.append(f"data.max_sample_size={tokens}")
            fit.append(f"data.max_tokens={tokens}")
        return fit

    def warning(self) -> str | None:
        """A paragraph when one update reads more than the training data, else None."""
        if not self.too_large:
            return None
        passes = self.passes_per_update
        audio = f", up to {format_duration(self.seconds_per_update)} of audio" \
            if self.seconds_per_update is not None else ""
        data = f", {format_duration(self.data_seconds)}" if self.data_seconds is not None else ""
        fit = self.fitting_overrides()
        text = (f"one update ({self.update_freq} micro-batches{audio}) is larger than the "
                f"training data ({self.batches_per_epoch} micro-batches{data}): every update reads "
                f"each utterance about {passes:.2g} times, at that many times the cost, with no "
                f"new information.")
        if fit:
            text += (f" To fit this corpus, override `{' '.join(fit)}` (for this stage only: "
                     f"`stages.{self.stage}.` in front of each key).")
        return text + " docs/troubleshooting.md has a CPU smoke-test line for the paper recipes."
