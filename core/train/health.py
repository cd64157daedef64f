"""Training health: non-finite steps, divergence, fp16 loss-scale floor, codebook collapse,
contrastive learning stalled at chance."""

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


#: Code perplexity under this fraction of the codebook (G x V) counts as collapsed.
COLLAPSED_FRACTION = 0.05


class HealthMonitor:
    """Counts consecutive non-finite updates; watches code perplexity and contrastive loss.

    Args:
        max_nonfinite: consecutive non-finite updates that stop training.
        collapse_window: updates a symptom may last before its warning (0: off):
            ``code_perplexity`` at its floor (G, one code per group) or under
            ``COLLAPSED_FRACTION`` of the codebook (``num_codes``), or a
            ``contrastive`` loss within 1 % of its ``contrastive_chance`` (uniform logits:
            predictions or targets have collapsed to one vector).
        groups: codebook groups G when the model has a quantizer (the perplexity floor
            is G); a ``num_groups`` stat overrides it.
        num_codes: codebook size G x V (a ``num_codes`` stat overrides it).
        warn: where warnings go (default: the ``w2v.train`` logger).
    """

    def __init__(self, max_nonfinite: int, collapse_window: int = 0, groups: int | None = None,
                 num_codes: int | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.max_nonfinite = max_nonfinite
        self.collapse_window = collapse_window
        self.groups = groups
        self.num_codes = num_codes
        self.warn = warn or log.warning
        self.nonfinite_in_a_row = 0
        self.skipped_total = 0
        self.overflows_total = 0
        self._since: dict[str, int | None] = {"collapse": None, "stall": None}
        self._warned: dict[str, bool] = {"collapse": False, "stall": False}

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
        """Warn once per episode when a symptom lasts ``collapse_window`` updates."""
        if not self.collapse_window:
            return
        ppl = stats.get("code_perplexity")
        if ppl is not None:
            groups = stats.get("num_groups") or self.groups or 1
            codes = stats.get("num_codes") or self.num_codes or 0
            floor = max(1.1 * float(groups), COLLAPSED_FRACTION * float(codes))
            self._watch("collapse", update, float(ppl) <= floor, lambda n: (
                f"update {update}: codebook collapse: code_perplexity has stayed at {ppl:.2f} "
                f"(at most {floor:.1f}: one code per group is {groups:g}) for {n} updates. Raise "
                "the diversity loss weight (`objective.loss_weights`), check the Gumbel "
                "temperature schedule and the codebook init, or lower the lr."))
        loss, chance = stats.get("contrastive"), stats.get("contrastive_chance")
        if loss is not None and chance is not None:
            self._watch("stall", update, float(loss) >= 0.99 * float(chance), lambda n: (
                f"update {update}: contrastive learning is at chance: the contrastive loss "
                f"{loss:.3f} has stayed at the uniform-logits value {chance:.3f} for {n} "
                "updates (predictions or targets have collapsed to one vector). Usual causes: "
                "a feature penalty with a `layer_norm` encoder (fairseq LARGE uses "
                "`loss_weights: [0.1, 0.0]`), too high an lr or too short a warm-up, or too few "
                "updates for this model and data. See docs/troubleshooting.md."))

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
                "since": dict(self._since), "warned": dict(self._warned)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
        self.overflows_total = int(state.get("overflows_total", 0))
        self._since.update(state.get("since", {"collapse": state.get("collapsed_since")}))
        self._warned.update(state.get("warned", {"collapse": bool(state.get("collapse_warned"))}))
