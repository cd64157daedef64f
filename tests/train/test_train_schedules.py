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
    assert s(0) == s(1) == pytest.approx(1 / 100)  # fairseq starts at lr / warmup
    assert s(50) == pytest.approx(0.5)
    assert s(100) == pytest.approx(1.0)
    end = 1e-5 / 1e-3
    assert s(550) == pytest.approx(end + (1 - end) * 0.5)  # linear (power 1) halfway
    assert s(1000) == s(5000) == pytest.approx(end)


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
