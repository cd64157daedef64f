"""Contrastive learning stalled at chance: the masked contrastive objective's health check."""

from __future__ import annotations

from typing import Callable, Mapping

from w2v.train.health import HealthCheck


class ContrastiveAtChance(HealthCheck):
    """The ``contrastive`` loss within 1 % of ``contrastive_chance`` (its value for uniform
    logits): predictions or targets have collapsed to one vector."""

    name = "stall"

    def inspect(self, stats: Mapping[str, float]) -> tuple[bool, Callable[[int], str]] | None:
        loss, chance = stats.get("contrastive"), stats.get("contrastive_chance")
        if loss is None or chance is None:
            return None
        return float(loss) >= 0.99 * float(chance), lambda n: (
            f"contrastive learning is at chance: the contrastive loss {loss:.3f} has stayed at "
            f"the uniform-logits value {chance:.3f} for {n} updates (predictions or targets "
            "have collapsed to one vector). Usual causes: a feature penalty with a `layer_norm` "
            "encoder (fairseq LARGE uses `loss_weights: [0.1, 0.0]`), too high an lr or too "
            "short a warm-up, or too few updates for this model and data. See "
            "docs/troubleshooting.md.")
