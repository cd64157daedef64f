"""Codebook collapse: the health check every quantizer with a ``code_perplexity`` stat gives."""

from __future__ import annotations

from typing import Callable, Mapping

from w2v.train.health import HealthCheck

#: Code perplexity under this fraction of the codebook (G x V) counts as collapsed.
COLLAPSED_FRACTION = 0.05


class CodebookCollapse(HealthCheck):
    """``code_perplexity`` at its floor (G: one code per group) or under
    ``COLLAPSED_FRACTION`` of the codebook (G x V); ``num_groups`` / ``num_codes`` stats
    override the sizes given here."""

    name = "collapse"

    def __init__(self, groups: int | None = None, num_codes: int | None = None) -> None:
        self.groups = groups
        self.num_codes = num_codes

    def inspect(self, stats: Mapping[str, float]) -> tuple[bool, Callable[[int], str]] | None:
        ppl = stats.get("code_perplexity")
        if ppl is None:
            return None
        groups = stats.get("num_groups") or self.groups or 1
        codes = stats.get("num_codes") or self.num_codes or 0
        floor = max(1.1 * float(groups), COLLAPSED_FRACTION * float(codes))
        return float(ppl) <= floor, lambda n: (
            f"codebook collapse: code_perplexity has stayed at {ppl:.2f} (at most {floor:.1f}: "
            f"one code per group is {groups:g}) for {n} updates. Raise the diversity loss "
            "weight (`objective.loss_weights`), check the Gumbel temperature schedule and the "
            "codebook init, or lower the lr.")
