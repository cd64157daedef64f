"""Learning-rate and scalar schedules at key points; lengths as updates or fractions;
update_freq from batch_seconds; trainer config checks."""

from __future__ import annotations

import math

import pytest

from w2v.errors import ConfigError
from w2v.train import ScalarSchedule, ScheduleConfig, TrainerConfig, build_lr_schedule, \
    resolve_length
from w2v.train.schedules import CosineDecay, FixedRate, PolynomialDecay, TriStage


def test_polynomial_decay_follows_fairseq():
    s = build_lr_schedule(ScheduleConfig(name="polynomial", warmup=100, end_lr=1e-5), 1e-3, 1000)
    assert isinstance(s, PolynomialDecay)
    assert s(0) == 0.0 and s(1) == pytest.approx(1 / 100)  # fairseq: update 0 at lr 0
    assert s(50) == pytest.approx(0.5)
    assert s(100) == pytest.approx(1.0)
    end = 1e-5 / 1e-3
    assert s(550) == pytest.approx(end + (1 - end) * 0.5)  # linear (power 1) halfway
    assert s(1000) == s(5000) == pytest.approx(end)


def fairseq_polynomial_lrs(lr, warmup, total, end_lr=0.0, power=1.0, updates=None):
    """fairseq PolynomialDecayLRSchedule.step_update(n): the lr that update n runs at."""
    out = []
    for n in range(updates or total + 2):
        if warmup > 0 and n <= warmup:
            out.append(n / float(warmup) * lr)
        elif n >= total:
            out.append(end_lr)
        else:
            pct_remaining = 1 - (n - warmup) / (total - warmup)
            out.append((lr - end_lr) * pct_remaining ** power + end_lr)
    return out


def fairseq_tri_stage_lrs(lr, total, ratios=(0.1, 0.4, 0.5), init_scale=0.01, final_scale=0.05):
    """fairseq TriStageLRSchedule with phase_ratio: int()-truncated phases, step_update(n)."""
    warmup, hold, decay = (int(total * r) for r in ratios)
    init_lr, final_lr = init_scale * lr, final_scale * lr
    rate = (lr - init_lr) / warmup if warmup else 0
    factor = -math.log(final_scale) / decay
    out = []
    for n in range(total + 2):
        if n < warmup:
            out.append(init_lr + rate * n)
        elif n < warmup + hold:
            out.append(lr)
        elif n <= warmup + hold + decay:
            out.append(lr * math.exp(-factor * (n - warmup - hold)))
        else:
            out.append(final_lr)
    return out


@pytest.mark.parametrize("total, warmup", [(47, 0.08), (55, 0.1), (123, 0.08), (1000, 80),
                                           (10, 3)])
def test_polynomial_lr_sequence_equals_fairseq_from_update_0(total, warmup):
    lr = 5e-4
    s = build_lr_schedule(ScheduleConfig(name="polynomial", warmup=warmup, end_lr=1e-6), lr,
                          total)
    want = fairseq_polynomial_lrs(lr, s.warmup, total, end_lr=1e-6)
    assert want[0] == 0.0
    assert [lr * s(n) for n in range(total + 2)] == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("total", [47, 55, 123, 1000, 13000])
def test_tri_stage_lr_sequence_equals_fairseq(total):
    lr = 5e-5
    s = build_lr_schedule(ScheduleConfig(name="tri_stage", warmup=0.1, hold=0.4, decay=0.5), lr,
                          total)
    assert [lr * s(n) for n in range(total + 2)] == pytest.approx(
        fairseq_tri_stage_lrs(lr, total), rel=1e-12)


def test_tri_stage_truncates_phase_fractions_but_other_lengths_round():
    s = build_lr_schedule(ScheduleConfig(name="tri_stage"), 1.0, 47)
    assert (s.warmup, s.hold, s.decay) == (4, 18, 23)            # int(4.7), int(18.8), int(23.5)
    assert resolve_length(0.1, 47, "k") == 5                      # freeze_updates etc. round
    assert build_lr_schedule(ScheduleConfig(name="cosine", warmup=0.1), 1.0, 47).warmup == 5


def test_only_the_polynomial_warmup_starts_at_zero():
    cos = build_lr_schedule(ScheduleConfig(name="cosine", warmup=10), 1.0, 100)
    fixed = build_lr_schedule(ScheduleConfig(name="fixed", warmup=10), 1.0, 100)
    assert cos(0) == fixed(0) == cos(1) == pytest.approx(0.1)


def test_warmup_as_fraction_of_max_updates():
    s = build_lr_schedule(ScheduleConfig(name="polynomial", warmup=0.08), 5e-4, 400_000)
    assert s.warmup == 32_000  # wav2vec 2.0 BASE
    assert build_lr_schedule(ScheduleConfig(), 5e-4, 1000).warmup == 80  # default 8 %


def test_tri_stage_follows_fairseq():
    s = build_lr_schedule(ScheduleConfig(name="tri_stage"), 5e-5, 1000)
    assert isinstance(s, TriStage) and (s.warmup, s.hold, s.decay) == (100, 400, 500)
    assert s(0) == pytest.approx(0.01)
    assert s(50) == pytest.approx(0.01 + 0.99 * 0.5)
    assert s(100) == s(499) == 1.0
    assert s(750) == pytest.approx(math.sqrt(0.05))  # exponential: halfway is the geometric mean
    assert s(1000) == pytest.approx(0.05) and s(2000) == 0.05
    custom = build_lr_schedule(ScheduleConfig(name="tri_stage", warmup=10, hold=0, decay=0.5,
                                              init_lr_scale=0.1, final_lr_scale=0.01), 1.0, 100)
    assert (custom.warmup, custom.hold, custom.decay) == (10, 0, 50)
    assert custom(10) == 1.0 and custom(60) == pytest.approx(0.01)


def test_cosine_and_fixed():
    c = build_lr_schedule(ScheduleConfig(name="cosine", warmup=10, min_lr_scale=0.1), 1.0, 110)
    assert isinstance(c, CosineDecay)
    assert c(5) == pytest.approx(0.5) and c(10) == pytest.approx(1.0)
    assert c(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert c(110) == pytest.approx(0.1) and c(500) == pytest.approx(0.1)
    f = build_lr_schedule(ScheduleConfig(name="fixed"), 1.0, 100)
    assert isinstance(f, FixedRate) and f(0) == f(99) == 1.0
    fw = build_lr_schedule(ScheduleConfig(name="fixed", warmup=4), 1.0, 100)
    assert fw(2) == 0.5 and fw(4) == fw(50) == 1.0


def test_scalar_schedules():
    gumbel = ScalarSchedule(start=2.0, end=0.5, shape="exponential", decay=0.999995)
    assert gumbel.value(0) == 2.0
    assert gumbel.value(100_000) == pytest.approx(2.0 * 0.999995 ** 100_000)
    assert gumbel.value(277_300) == 0.5 and gumbel.value(10**7) == 0.5
    linear = ScalarSchedule(start=2.0, end=0.5, shape="linear", length=0.7)  # vq-wav2vec
    assert linear.value(35, max_updates=100) == pytest.approx(1.25)
    assert linear.value(70, max_updates=100) == pytest.approx(0.5)
    assert linear.value(90, max_updates=100) == pytest.approx(0.5)
    geometric = ScalarSchedule(start=1.0, end=0.01, shape="exponential", length=100)
    assert geometric.value(50) == pytest.approx(0.1)
    cosine = ScalarSchedule(start=1.0, end=0.0, shape="cosine", length=10)
    assert cosine.value(5) == pytest.approx(0.5) and cosine.value(10) == pytest.approx(0.0)
    assert ScalarSchedule(start=3.0, shape="constant").value(123) == 3.0
    with pytest.raises(ValueError, match="max_updates"):
        linear.value(10)


def test_lengths_updates_or_fractions():
    assert resolve_length(1000, 50_000, "k") == 1000
    assert resolve_length(0.1, 50_000, "k") == 5000
    assert resolve_length(1.0, 50_000, "k") == 50_000  # a float 1.0 is the whole run
    assert resolve_length(1, 50_000, "k") == 1  # an int 1 is one update
    assert resolve_length(2000.0, 50_000, "k") == 2000
    with pytest.raises(ConfigError, match="fraction"):
        resolve_length(12.5, 50_000, "k")
    with pytest.raises(ConfigError):
        resolve_length(-1, 50_000, "k")
    with pytest.raises(ConfigError) as info:
        ScheduleConfig(warmup=3.5)
    assert info.value.key == "warmup"


def test_update_freq_from_batch_seconds():
    # fairseq base_10h: 1600 s per update from 3.2M-sample batches = 200 s per device
    cfg = TrainerConfig(batch_seconds=1600.0)
    assert cfg.resolve_update_freq(3_200_000, 16_000, world_size=2) == 4
    assert cfg.resolve_update_freq(3_200_000, 16_000, world_size=8) == 1
    assert cfg.resolve_update_freq(3_200_000, 16_000, world_size=3) == 3  # ceil(2.67)
    assert cfg.resolve_update_freq(1_400_000, 16_000, world_size=1) == 19  # ceil(18.3)
    assert TrainerConfig(update_freq=5).resolve_update_freq(None, None, 4) == 5
    with pytest.raises(ConfigError, match="max_tokens"):
        cfg.resolve_update_freq(None, 16_000)
    with pytest.raises(ConfigError) as info:
        TrainerConfig(batch_seconds=100.0, update_freq=2)
    assert info.value.key == "batch_seconds"


def test_trainer_config_bounds():
    with pytest.raises(ConfigError) as info:
        TrainerConfig(keep_last=0)
    assert info.value.key == "keep_last"
    with pytest.raises(ConfigError, match="beta"):
        TrainerConfig(betas=(0.9, 1.5))
    with pytest.raises(ConfigError) as info:
        TrainerConfig(max_updates=100, freeze_updates={"encoder": 2.5})
    assert info.value.key == "freeze_updates.encoder"


def test_trainer_section_structures_from_yaml_mapping():
    """The recipe structurer builds the nested sections (ints vs fractions preserved)."""
    from w2v.config.structure import structure

    raw = {"max_updates": 1000, "lr": "3e-5", "precision": "bf16",
           "schedule": {"name": "tri_stage", "warmup": 0.1, "hold": 400},
           "param_groups": {"encoder": {"lr_scale": 0.1}},
           "freeze_updates": {"aggregator": 100}, "freeze": ["encoder"],
           "restore": {"path": "runs/x", "reset_optimizer": True}}
    cfg = structure(raw, TrainerConfig)
    assert cfg.lr == 3e-5 and cfg.schedule.warmup == 0.1 and cfg.schedule.hold == 400
    assert isinstance(cfg.schedule.hold, int) and cfg.param_groups["encoder"].lr_scale == 0.1
    assert cfg.restore.reset_optimizer is True
    with pytest.raises(ConfigError, match="Did you mean `polynomial`"):
        structure({"schedule": {"name": "polynomal"}}, TrainerConfig)
