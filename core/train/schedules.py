"""Learning-rate schedules and scalar schedules, as pure functions of the update count.

A schedule maps ``step`` (updates completed before the current one, 0-based)
to a *factor* of the peak learning rate; no state besides the step, so a
resumed run is exact and ``reset_lr_schedule`` is an offset. ``polynomial`` and
``tri_stage`` give fairseq's values update for update: the polynomial warmup
runs update 0 at lr 0 (factor ``step / warmup``, fairseq
``polynomial_decay_schedule.py``), tri_stage phase lengths given as fractions
are truncated with ``int()`` (fairseq ``tri_stage_lr_scheduler.py``), and it
decays exponentially from the peak to ``final_lr_scale``. ``cosine`` and
``fixed`` warm up with ``max(step, 1) / warmup``, so their first update is never
at lr 0.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs

from .config import ScheduleConfig, resolve_length


def _warmup_factor(step: int, warmup: int) -> float:
    """Linear warmup that never gives lr 0: ``max(step, 1) / warmup`` (cosine, fixed)."""
    return max(step, 1) / warmup


@attrs.frozen(kw_only=True)
class PolynomialDecay:
    """Linear warmup ``step / warmup`` (update 0 at lr 0, as fairseq) to the peak, then
    ``(1 - progress) ** power`` down to ``end_factor``."""

    warmup: int
    total: int
    end_factor: float = 0.0
    power: float = 1.0

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step <= self.warmup:
            return step / self.warmup
        if step >= self.total:
            return self.end_factor
        remaining = 1.0 - (step - self.warmup) / (self.total - self.warmup)
        return (1.0 - self.end_factor) * remaining ** self.power + self.end_factor


@attrs.frozen(kw_only=True)
class TriStage:
    """Linear warmup from ``init_scale``, hold at 1, exponential decay to ``final_scale``, hold."""

    warmup: int
    hold: int
    decay: int
    init_scale: float = 0.01
    final_scale: float = 0.05

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.init_scale + (1.0 - self.init_scale) * step / self.warmup
        step -= self.warmup
        if step < self.hold:
            return 1.0
        step -= self.hold
        if step <= self.decay and self.decay > 0:
            return math.exp(math.log(self.final_scale) * step / self.decay) \
                if self.final_scale > 0 else (1.0 if step == 0 else 0.0)
        return self.final_scale


@attrs.frozen(kw_only=True)
class CosineDecay:
    """Linear warmup, then half a cosine from 1 to ``min_scale`` at ``total``."""

    warmup: int
    total: int
    min_scale: float = 0.0

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step <= self.warmup:
            return _warmup_factor(step, self.warmup)
        span = max(self.total - self.warmup, 1)
        progress = min(max(step - self.warmup, 0) / span, 1.0)
        return self.min_scale + (1.0 - self.min_scale) * 0.5 * (1.0 + math.cos(math.pi * progress))


@attrs.frozen(kw_only=True)
class FixedRate:
    """Linear warmup (if any), then the peak."""

    warmup: int = 0

    def __call__(self, step: int) -> float:
        if self.warmup > 0 and step <= self.warmup:
            return _warmup_factor(step, self.warmup)
        return 1.0


LRSchedule = PolynomialDecay | TriStage | CosineDecay | FixedRate


def build_lr_schedule(config: ScheduleConfig, lr: float, max_updates: int) -> LRSchedule:
    """The schedule of ``config`` for a run of ``max_updates`` with peak ``lr``."""

    def length(name: str, default: float, truncate: bool = False) -> int:
        value = getattr(config, name)
        return resolve_length(default if value is None else value, max_updates,
                              f"schedule.{name}", truncate=truncate)

    if config.name == "polynomial":
        warmup = min(length("warmup", 0.08), max_updates)
        end = config.end_lr / lr if lr > 0 else 0.0
        return PolynomialDecay(warmup=warmup, total=max_updates, end_factor=end,
                               power=config.power)
    if config.name == "tri_stage":
        # fairseq: int(max_update * phase_ratio[i]), truncated, not rounded
        return TriStage(warmup=length("warmup", 0.1, True), hold=length("hold", 0.4, True),
                        decay=length("decay", 0.5, True), init_scale=config.init_lr_scale,
                        final_scale=config.final_lr_scale)
    if config.name == "cosine":
        return CosineDecay(warmup=min(length("warmup", 0.08), max_updates), total=max_updates,
                           min_scale=config.min_lr_scale)
    return FixedRate(warmup=length("warmup", 0))


ScalarShape = Literal["constant", "linear", "cosine", "exponential"]


@attrs.frozen(kw_only=True)
class ScalarSchedule:
    """Any scalar a component anneals per update (a Gumbel temperature, a loss weight).

    ``value(step, max_updates)`` goes from ``start`` to ``end`` over ``length``
    (an int: updates; a float up to 1.0: a fraction of ``max_updates``) and stays at ``end``:

    - ``linear`` / ``cosine``: interpolation over ``length``;
    - ``exponential``: with ``decay`` set, ``start * decay ** step`` clamped at ``end``
      (wav2vec 2.0's temperature ``max(2 * 0.999995 ** n, 0.5)``); otherwise geometric
      interpolation reaching ``end`` after ``length``;
    - ``constant``: always ``start``.

    Example::

        temp = ScalarSchedule(start=2.0, end=0.5, shape="exponential", decay=0.999995)
        temp.value(277_000)   # ~0.5
    """

    start: float
    end: float | None = None
    shape: ScalarShape = "linear"
    length: int | float = 1.0
    decay: float | None = None

    def value(self, step: int, max_updates: int | None = None) -> float:
        end = self.start if self.end is None else self.end
        if self.shape == "constant" or end == self.start:
            return self.start
        if self.shape == "exponential" and self.decay is not None:
            v = self.start * self.decay ** step
            return max(v, end) if self.start > end else min(v, end)
        if isinstance(self.length, float) and self.length <= 1.0 and max_updates is None:
            raise ValueError("a fractional schedule length needs max_updates "
                             "(components get it from the trainer via set_max_updates)")
        n = max(resolve_length(self.length, max_updates or 1, "length"), 1)
        t = min(max(step, 0) / n, 1.0)
        if self.shape == "linear":
            return self.start + (end - self.start) * t
        if self.shape == "cosine":
            return end + (self.start - end) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.start <= 0 or end <= 0:
            raise ValueError("exponential interpolation needs positive start and end")
        return self.start * (end / self.start) ** t
