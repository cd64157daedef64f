"""Training health: non-finite steps, divergence with a finite loss
(:mod:`.divergence`), fp16 loss-scale floor, and the symptoms components watch for in
their own stats (:class:`HealthCheck`: a quantizer's codebook collapse, a contrastive loss
stalled at chance, provided by the plugins that own them)."""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping

from .divergence import DivergenceDetector
from .precision import MIN_LOSS_SCALE

log = logging.getLogger("w2v.train")


class TrainingDiverged(RuntimeError):
    """Training stopped because it diverged (not a mistake in the user's files).

    ``w2vrun`` prints :attr:`message` without a traceback and exits with code 1.
    """

    exit_code = 1
    w2v_clean = True  # w2vrun prints the message alone (no traceback) and exits 1

    def __init__(self, message: str, *, update: int | None = None) -> None:
        self.message = message
        self.update = update
        super().__init__(message)


_RESUME = " Training can resume from the last good checkpoint."
_LR_ADVICE = ("Lower `trainer.lr`, lengthen the warm-up (`trainer.schedule.warmup`) or set "
              "`trainer.clip_norm` (e.g. 10).")


def divergence_advice(detector: DivergenceDetector) -> str:
    return (f"{_LR_ADVICE}{_RESUME} If this loss swings by design, raise "
            f"`trainer.divergence_factor` (now {detector.factor:g}) or set "
            f"`trainer.divergence_window: 0` to turn the check off.")


class HealthCheck:
    """A symptom a component (model part or objective) watches for in the logged stats.

    Components provide checks through a ``health_checks() -> list[HealthCheck]``
    method; the trainer hands them to its :class:`HealthMonitor`, which warns once per
    episode when a symptom lasts ``trainer.collapse_window`` updates.
    """

    #: key of the episode state in checkpoints
    name: str = "symptom"

    def inspect(self, stats: Mapping[str, float]) -> tuple[bool, Callable[[int], str]] | None:
        """``(present, message)`` for one update's stats (``message(n)``: the warning once
        the symptom has lasted ``n`` updates), or None when the stats do not say."""
        return None


class HealthMonitor:
    """Counts consecutive non-finite updates; watches the components' :class:`HealthCheck` s.

    Args:
        max_nonfinite: consecutive non-finite updates that stop training.
        collapse_window: updates a symptom may last before its warning (0: off).
        checks: the symptoms to watch (see :class:`HealthCheck`).
        warn: where warnings go (default: the ``w2v.train`` logger).
        divergence: judges finite updates (None: no divergence detection).
    """

    def __init__(self, max_nonfinite: int, collapse_window: int = 0,
                 checks: list[HealthCheck] | tuple[HealthCheck, ...] = (),
                 warn: Callable[[str], None] | None = None,
                 divergence: DivergenceDetector | None = None) -> None:
        self.max_nonfinite = max_nonfinite
        self.collapse_window = collapse_window
        self.checks = list(checks)
        self.warn = warn or log.warning
        self.divergence = divergence
        self.finite_total = 0
        self.nonfinite_in_a_row = 0
        self.skipped_total = 0
        self.overflows_total = 0
        self._since: dict[str, int | None] = {c.name: None for c in self.checks}
        self._warned: dict[str, bool] = {c.name: False for c in self.checks}

    def record(self, update: int, loss: float, grad_norm: float, *, fp16: bool,
               loss_scale: float | None = None, sample_size: float | None = None,
               group: str = "default") -> bool:
        """Judge one update (``loss``: summed over ``sample_size``); True when it may step.
        Raises :class:`TrainingDiverged`."""
        loss_ok = math.isfinite(loss)
        grad_ok = math.isfinite(grad_norm)
        if loss_ok and grad_ok:
            self.nonfinite_in_a_row = 0
            self.finite_total += 1
            if self.divergence is not None and sample_size:
                self._judge(update, loss / sample_size, grad_norm, group)
            return True
        if fp16 and loss_ok:
            # gradient overflow under dynamic loss scaling: the scaler lowers the scale
            self.overflows_total += 1
            if loss_scale is not None and loss_scale < MIN_LOSS_SCALE:
                raise TrainingDiverged(
                    f"training diverged at update {update}: the fp16 loss scale fell to "
                    f"{loss_scale:g}, below {MIN_LOSS_SCALE:g}, because gradients keep "
                    f"overflowing. {self._nonfinite_advice(True)}", update=update)
            log.debug("update %d: gradient overflow, loss scale lowered", update)
            return False
        self.nonfinite_in_a_row += 1
        self.skipped_total += 1
        what = "loss" if not loss_ok else "gradient norm"
        self.warn(f"update {update}: non-finite {what} (loss {loss:g}, grad norm {grad_norm:g}); "
                  f"skipped the update ({self.nonfinite_in_a_row} in a row, stop at "
                  f"{self.max_nonfinite}).")
        if self.nonfinite_in_a_row >= self.max_nonfinite:
            raise TrainingDiverged(
                f"training diverged at update {update}: the loss or gradient was non-finite in "
                f"{self.nonfinite_in_a_row} consecutive updates (last: loss {loss:g}, gradient "
                f"norm {grad_norm:g}). {self._nonfinite_advice(fp16)}", update=update)
        return False

    def _judge(self, update: int, loss: float, grad_norm: float, group: str) -> None:
        verdict = self.divergence.observe(update, loss, grad_norm, group)
        if verdict is None:
            return
        if verdict.action == "stop":
            raise TrainingDiverged(f"{verdict.message} {divergence_advice(self.divergence)}",
                                   update=update)
        self.warn(f"{verdict.message} Likely divergence: {_LR_ADVICE}")

    def _nonfinite_advice(self, fp16: bool) -> str:
        """The likely cause of non-finite updates, from what came before them."""
        if fp16:
            return ("Under fp16 the activations or gradients overflow its range: use "
                    f"`trainer.precision: bf16` (or fp32). If that does not help: {_LR_ADVICE}"
                    f"{_RESUME}")
        if self.divergence is not None and self.divergence.rising:
            return (f"The loss or gradient norm was climbing before it stopped being finite: "
                    f"the lr is too high for this model. {_LR_ADVICE}{_RESUME}")
        if self.finite_total == 0:
            return ("No update was finite, so the cause is in the inputs or the model rather "
                    "than in training: check the data (features or tokens from other tools are "
                    "not range-checked the way audio files are) and the model settings; without "
                    "a warm-up, a very high `trainer.lr` can do this too.")
        return (f"After {self.finite_total} healthy updates: usually one batch met too high an "
                f"lr. {_LR_ADVICE} If it recurs at the same data, look at those inputs."
                f"{_RESUME}")

    def observe(self, update: int, stats: dict[str, float]) -> None:
        """Warn once per episode when a check's symptom lasts ``collapse_window`` updates."""
        if not self.collapse_window:
            return
        for check in self.checks:
            finding = check.inspect(stats)
            if finding is not None:
                present, message = finding
                self._watch(check.name, update, present,
                            lambda n, message=message: f"update {update}: {message(n)}")

    def _watch(self, symptom: str, update: int, present: bool, message) -> None:
        if not present:
            self._since[symptom], self._warned[symptom] = None, False
            return
        if self._since[symptom] is None:
            self._since[symptom] = update
        n = update - self._since[symptom] + 1
        if not self._warned[symptom] and n >= self.collapse_window:
            self._warned[symptom] = True
            self.warn(message(n))

    def state_dict(self) -> dict[str, Any]:
        return {"nonfinite_in_a_row": self.nonfinite_in_a_row,
                "skipped_total": self.skipped_total, "overflows_total": self.overflows_total,
                "finite_total": self.finite_total,
                "since": dict(self._since), "warned": dict(self._warned),
                "divergence": self.divergence.state_dict() if self.divergence else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
        self.overflows_total = int(state.get("overflows_total", 0))
        self.finite_total = int(state.get("finite_total", 0))
        if self.divergence is not None and state.get("divergence"):
            self.divergence.load_state_dict(state["divergence"])
        self._since.update(state.get("since", {"collapse": state.get("collapsed_since")}))
        self._warned.update(state.get("warned", {"collapse": bool(state.get("collapse_warned"))}))
