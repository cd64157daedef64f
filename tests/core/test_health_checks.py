"""Health checks come from the components that own the stats (core names no paper): the
quantizers watch their codebook, the masked contrastive objective its chance level, and the
trainer's monitor only runs what the model and objective give it."""

from __future__ import annotations

from w2v.plugins.quantizers.gumbel import GumbelQuantizer
from w2v.plugins.quantizers.health import CodebookCollapse
from w2v.plugins.quantizers.kmeans import KMeansQuantizer
from w2v.plugins.wav2vec2.health import ContrastiveAtChance
from w2v.plugins.wav2vec2.objective import MaskedContrastiveConfig, MaskedContrastiveObjective
from w2v.train.health import HealthMonitor


def test_quantizers_and_the_contrastive_objective_provide_their_checks():
    for quantizer in (GumbelQuantizer(GumbelQuantizer.Config(groups=2, num_vars=8, dim=8), 16),
                      KMeansQuantizer(KMeansQuantizer.Config(groups=2, num_vars=8), 16)):
        [check] = quantizer.health_checks()
        assert isinstance(check, CodebookCollapse)
        assert (check.groups, check.num_codes) == (2, 16)
    objective = MaskedContrastiveObjective(MaskedContrastiveConfig(contrastive_loss=None), 8, 8)
    assert [type(c) for c in objective.health_checks()] == [ContrastiveAtChance]


def test_the_monitor_watches_only_the_checks_it_was_given():
    warnings = []
    stats = {"code_perplexity": 1.0, "contrastive": 3.9, "contrastive_chance": 3.9}
    bare = HealthMonitor(max_nonfinite=2, collapse_window=1, warn=warnings.append)
    bare.observe(1, stats)
    assert warnings == []                      # no check knows these stats: no warning
    full = HealthMonitor(max_nonfinite=2, collapse_window=1,
                         checks=[CodebookCollapse(groups=2), ContrastiveAtChance()],
                         warn=warnings.append)
    full.observe(1, stats)
    assert len(warnings) == 2 and "codebook collapse" in warnings[0] and \
        "at chance" in warnings[1] and all(w.startswith("update 1: ") for w in warnings)
    state = full.state_dict()
    assert state["since"] == {"collapse": 1, "stall": 1}
