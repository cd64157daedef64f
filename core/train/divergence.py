"""Divergence while the loss stays finite: a loss or gradient norm far above its running level.

A run at too high a learning rate often does not produce NaNs: its loss climbs
from 24 to 15,000 and stays there, finite. :class:`DivergenceDetector` keeps a
running average (an exponential moving average, bias-corrected) of the
per-sample loss and of the gradient norm, per parameter group, fed only with
updates that look healthy; an update whose loss or gradient norm exceeds
``factor`` times its average is anomalous. An episode of anomalous updates is
reported once it lasts ``window // 10`` updates and stops training once it
lasts ``window``. Because anomalous updates never enter the averages, a run
that has diverged cannot make its new level look normal; single spikes end
their episode at the next healthy update.

Objectives whose losses swing by design (adversarial training) disable or
replace the detector with a ``divergence_detector(window, factor)`` method that
returns a detector or None (see :func:`detector_for`).
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Verdict:
    """What one update's numbers mean: ``action`` is ``"warn"`` or ``"stop"``; ``message``
    describes the episode (without advice)."""

    action: str
    message: str


class DivergenceDetector:
    """Watches finite updates for a loss or gradient norm that stays far above its level.

    Args:
        window: consecutive anomalous updates that stop training (0: never judge).
        factor: an update is anomalous when its loss or gradient norm exceeds ``factor``
            times the running average.
        decay: the running averages' decay per healthy update (0.98: about 50 updates).
        min_history: healthy updates that form the running level before updates are judged
            (1: the first update's, usually the highest a healthy run sees; a run at 1000x the
            lr diverges at its second update).
    """

    def __init__(self, window: int = 50, factor: float = 10.0, decay: float = 0.98,
                 min_history: int = 1) -> None:
        self.window = window
        self.factor = factor
        self.decay = decay
        self.min_history = min_history
        self.warn_after = max(1, window // 10)
        self.reset()

    def reset(self) -> None:
        """Forget the running levels (after unfreezing a component, or a restore)."""
        self._levels: dict[str, dict[str, float]] = {}
        self.anomalous_in_a_row = 0

    @property
    def rising(self) -> bool:
        """Whether the last judged update was anomalous (the run was climbing)."""
        return self.anomalous_in_a_row > 0

    def observe(self, update: int, loss: float, grad_norm: float,
                group: str = "default") -> Verdict | None:
        """Judge one finite update; ``loss`` is per sample (sum / sample size)."""
        if not self.window:
            return None
        level = self._levels.setdefault(group, {"n": 0, "loss": 0.0, "grad": 0.0})
        if level["n"] < self.min_history:
            self._absorb(level, loss, grad_norm)
            return None
        avg_loss, avg_grad = self._average(level, "loss"), self._average(level, "grad")
        high = [f"the loss {_show(loss)} is {loss / avg_loss:,.0f}x its running average "
                f"{_show(avg_loss)}"] if avg_loss > 0 and loss > self.factor * avg_loss else []
        if avg_grad > 0 and grad_norm > self.factor * avg_grad:
            high.append(f"the gradient norm {_show(grad_norm)} is {grad_norm / avg_grad:,.0f}x "
                        f"its running average {_show(avg_grad)}")
        if not high:
            self.anomalous_in_a_row = 0
            self._absorb(level, loss, grad_norm)
            return None
        self.anomalous_in_a_row += 1
        n = self.anomalous_in_a_row
        what = f"update {update}: {' and '.join(high)}"
        if n >= self.window:
            return Verdict("stop", f"training diverged at update {update}: the loss or gradient "
                                   f"norm has stayed above {self.factor:g}x its running average "
                                   f"for {n} updates ({what.split(': ', 1)[1]}).")
        if n == self.warn_after:
            return Verdict("warn", f"{what} ({n} updates in a row; training stops after "
                                   f"{self.window}).")
        return None

    def _absorb(self, level: dict[str, float], loss: float, grad_norm: float) -> None:
        level["n"] += 1
        level["loss"] = self.decay * level["loss"] + (1 - self.decay) * loss
        level["grad"] = self.decay * level["grad"] + (1 - self.decay) * grad_norm

    def _average(self, level: dict[str, float], key: str) -> float:
        return level[key] / (1 - self.decay ** level["n"])

    def state_dict(self) -> dict[str, Any]:
        return {"levels": {g: dict(v) for g, v in self._levels.items()},
                "anomalous_in_a_row": self.anomalous_in_a_row}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._levels = {g: {k: float(x) for k, x in v.items()}
                        for g, v in (state.get("levels") or {}).items()}
        for level in self._levels.values():
            level["n"] = int(level["n"])
        self.anomalous_in_a_row = int(state.get("anomalous_in_a_row", 0))


def _show(x: float) -> str:
    """15,000 rather than 1.5e+04; small values with four significant digits."""
    return f"{x:,.0f}" if 100 <= abs(x) < 1e12 else f"{x:.4g}"


def detector_for(objective: Any, window: int, factor: float) -> DivergenceDetector | None:
    """The objective's own detector (``objective.divergence_detector(window, factor)``, None
    to turn detection off), else the default one."""
    own = getattr(objective, "divergence_detector", None)
    if callable(own):
        return own(window, factor)
    return DivergenceDetector(window, factor)
