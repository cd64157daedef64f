"""Training health: non-finite steps, divergence, fp16 loss-scale floor, codebook collapse."""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

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


_ADVICE = ("Lower `trainer.lr` or lengthen the warmup, set `trainer.clip_norm`, prefer "
           "`precision: bf16` over fp16, or look for broken inputs (`data.bad_input: skip`). "
           "Training can resume from the last good checkpoint.")


class HealthMonitor:
    """Counts consecutive non-finite updates and watches code perplexity.

    Args:
        max_nonfinite: consecutive non-finite updates that stop training.
        collapse_window: updates ``code_perplexity`` may stay at its floor before a
            warning (0: off).
        groups: codebook groups G when the model has a quantizer (the perplexity floor
            is G); a ``num_groups`` stat overrides it.
        warn: where warnings go (default: the ``w2v.train`` logger).
    """

    def __init__(self, max_nonfinite: int, collapse_window: int = 0, groups: int | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.max_nonfinite = max_nonfinite
        self.collapse_window = collapse_window
        self.groups = groups
        self.warn = warn or log.warning
        self.nonfinite_in_a_row = 0
        self.skipped_total = 0
        self.overflows_total = 0
        self._collapsed_since: int | None = None
        self._collapse_warned = False

    def record(self, update: int, loss: float, grad_norm: float, *, fp16: bool,
               loss_scale: float | None = None) -> bool:
        """Judge one update; True when it may step. Raises :class:`TrainingDiverged`."""
        loss_ok = math.isfinite(loss)
        grad_ok = math.isfinite(grad_norm)
        if loss_ok and grad_ok:
            self.nonfinite_in_a_row = 0
            return True
        if fp16 and loss_ok:
            # gradient overflow under dynamic loss scaling: the scaler lowers the scale
            self.overflows_total += 1
            if loss_scale is not None and loss_scale < MIN_LOSS_SCALE:
                raise TrainingDiverged(
                    f"training diverged at update {update}: the fp16 loss scale fell to "
                    f"{loss_scale:g}, below {MIN_LOSS_SCALE:g}, because gradients keep "
                    f"overflowing. {_ADVICE}", update=update)
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
                f"norm {grad_norm:g}). {_ADVICE}", update=update)
        return False

    def observe(self, update: int, stats: dict[str, float]) -> None:
        """Warn once when ``code_perplexity`` stays near its floor for ``collapse_window``."""
        ppl = stats.get("code_perplexity")
        if not self.collapse_window or ppl is None:
            return
        groups = stats.get("num_groups") or self.groups or 1
        if ppl <= 1.1 * groups:
            if self._collapsed_since is None:
                self._collapsed_since = update
            if not self._collapse_warned and update - self._collapsed_since + 1 >= \
                    self.collapse_window:
                self._collapse_warned = True
                self.warn(
                    f"update {update}: codebook collapse: code_perplexity has stayed at "
                    f"{ppl:.2f} (floor {groups:g}, one code per group) for "
                    f"{update - self._collapsed_since + 1} updates. Raise the diversity loss "
                    f"weight, check the Gumbel temperature schedule, or lower the lr.")
        else:
            self._collapsed_since = None
            self._collapse_warned = False

    def state_dict(self) -> dict[str, Any]:
        return {"nonfinite_in_a_row": self.nonfinite_in_a_row,
                "skipped_total": self.skipped_total, "overflows_total": self.overflows_total,
                "collapsed_since": self._collapsed_since,
                "collapse_warned": self._collapse_warned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
        self.overflows_total = int(state.get("overflows_total", 0))
        self._collapsed_since = state.get("collapsed_since")
        self._collapse_warned = bool(state.get("collapse_warned", False))
