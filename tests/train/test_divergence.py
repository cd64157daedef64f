"""Divergence with a finite loss stops the run (exit 1) with advice about lr, warm-up and
clipping; single spikes, noisy losses and alternating objectives do not; non-finite stops name
the likely cause instead of always suggesting `data.bad_input: skip`."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from w2v.train.divergence import DivergenceDetector, detector_for
from w2v.train.health import HealthMonitor, TrainingDiverged


def feed(detector, losses, grads=None, group="default", start=1):
    """Observe ``losses`` (and grads, default 1.0) until a stop; returns the (update, verdict)
    pairs."""
    out = []
    grads = grads if grads is not None else [1.0] * len(losses)
    for i, (loss, grad) in enumerate(zip(losses, grads)):
        verdict = detector.observe(start + i, loss, grad, group)
        if verdict is not None:
            out.append((start + i, verdict))
            if verdict.action == "stop":
                break
    return out


def test_a_sustained_climb_warns_then_stops_after_the_window():
    losses = [24.0 - 0.1 * i for i in range(20)] + [15_000.0] * 60
    verdicts = feed(DivergenceDetector(window=50, factor=10), losses)
    assert [(u, v.action) for u, v in verdicts] == [(25, "warn"), (70, "stop")]
    assert "15,000 is" in verdicts[1][1].message and "for 50 updates" in verdicts[1][1].message


def test_divergence_from_the_second_update_is_caught():
    # CTC at lr 10: 12 at the first update, thousands from the second on
    verdicts = feed(DivergenceDetector(window=50), [12.2] + [900.0, 3400.0, 2000.0] * 30)
    assert verdicts[-1] == (51, verdicts[-1][1]) and verdicts[-1][1].action == "stop"


def test_spikes_and_noise_never_stop_a_healthy_run():
    rng = random.Random(0)
    losses, grads = [], []
    for i in range(3000):
        level = 6.0 * 0.999 ** i + 0.5                       # a decreasing loss with noise
        spike = 30.0 if rng.random() < 0.02 else 1.0         # 2 % of batches 30x worse
        losses.append(level * rng.uniform(0.5, 1.5) * spike)
        grads.append(rng.lognormvariate(0.0, 1.0))           # heavy-tailed gradient norms
    losses[1000:1030] = [500.0] * 30                         # one bad stretch of 30 updates
    verdicts = feed(DivergenceDetector(window=50), losses, grads)
    assert all(v.action == "warn" for _, v in verdicts) and verdicts


def test_exploding_gradient_norm_alone_stops():
    grads = [2.0] * 10 + [500.0] * 50
    verdicts = feed(DivergenceDetector(window=50), [3.0] * 60, grads)
    assert verdicts[-1][1].action == "stop" and "gradient norm 500" in verdicts[-1][1].message


def test_groups_keep_their_own_levels_and_window_zero_is_off():
    detector = DivergenceDetector(window=5)
    for u in range(1, 200):   # a generator at 100 and a discriminator at 0.5, alternating
        group, loss = ("generator", 100.0) if u % 2 else ("discriminator", 0.5)
        assert detector.observe(u, loss, 1.0, group) is None
    assert feed(DivergenceDetector(window=0), [1.0] + [1e6] * 100) == []


def test_state_round_trip_and_reset():
    losses = [5.0] * 10 + [1e4] * 30
    first = DivergenceDetector(window=50)
    feed(first, losses)
    resumed = DivergenceDetector(window=50)
    resumed.load_state_dict(first.state_dict())
    assert feed(first, [1e4] * 20, start=41) == feed(resumed, [1e4] * 20, start=41)
    resumed.reset()                                   # a new level (after unfreezing)
    assert feed(resumed, [1e4] * 100, start=61) == []


class Adversarial:
    def divergence_detector(self, window, factor):
        return None


class OwnDetector:
    def divergence_detector(self, window, factor):
        return DivergenceDetector(window * 2, factor * 10)


def test_objectives_may_disable_or_replace_the_detector():
    assert detector_for(Adversarial(), 50, 10.0) is None
    own = detector_for(OwnDetector(), 50, 10.0)
    assert own.window == 100 and own.factor == 100.0
    default = detector_for(object(), 7, 3.0)
    assert default.window == 7 and default.factor == 3.0


def test_health_monitor_stops_with_lr_advice():
    monitor = HealthMonitor(10, divergence=DivergenceDetector(window=3))
    warnings = []
    monitor.warn = warnings.append
    assert monitor.record(1, 20.0, 1.0, fp16=False, sample_size=2.0)
    with pytest.raises(TrainingDiverged) as info:
        for u in range(2, 10):
            monitor.record(u, 20_000.0, 1.0, fp16=False, sample_size=2.0)
    text = info.value.message
    assert info.value.update == 4 and "trainer.lr" in text and "warm-up" in text
    assert "clip_norm" in text and "divergence_window: 0" in text
    assert len(warnings) == 1 and "x its running average" in warnings[0]


def _nonfinite_stop(monitor, first_update, fp16=False):
    with pytest.raises(TrainingDiverged) as info:
        for u in range(first_update, first_update + 20):
            monitor.record(u, float("nan"), float("nan"), fp16=fp16, sample_size=1.0)
    return info.value.message


def test_nonfinite_stop_names_the_likely_cause():
    # never finite: the inputs or the model, not the lr schedule
    text = _nonfinite_stop(HealthMonitor(3, divergence=DivergenceDetector()), 1)
    assert "No update was finite" in text and "data" in text
    # climbing before NaN: the lr
    monitor = HealthMonitor(3, divergence=DivergenceDetector())
    for u, loss in enumerate([5.0, 5.0, 400.0, 9000.0], start=1):
        monitor.record(u, loss, 1.0, fp16=False, sample_size=1.0)
    text = _nonfinite_stop(monitor, 5)
    assert "climbing" in text and "trainer.lr" in text
    # healthy, then NaN
    monitor = HealthMonitor(3, divergence=DivergenceDetector())
    for u in range(1, 30):
        monitor.record(u, 5.0, 1.0, fp16=False, sample_size=1.0)
    text = _nonfinite_stop(monitor, 30)
    assert "29 healthy updates" in text and "clip_norm" in text
    # fp16 overflow of the loss itself: precision
    text = _nonfinite_stop(HealthMonitor(3, divergence=DivergenceDetector()), 1, fp16=True)
    assert "bf16" in text
    for text in (text,):
        assert "bad_input: skip" not in text


# ------------------------------------------------------------------ a real run through w2vrun
CTC_RECIPE = """\
data:
  train: {manifest}
  labels: ltr
  pad: true
  max_tokens: 64000
  max_sample_size: 64000
  num_workers: 0
model:
  encoder: {{name: logmel, num_mel_bins: 16, cmvn: true}}
  aggregator: {{name: transformer, embed_dim: 32, layers: 2, ffn_dim: 64, heads: 2,
               conv_pos: 8, conv_pos_groups: 4}}
  head: {{name: ctc}}
objective: {{name: ctc, apply_mask: false}}
trainer:
  max_updates: 120
  lr: {lr}
  schedule: {{name: fixed, warmup: 0}}
  log_interval: 10
  save_interval: 1000
  device: cpu
  num_threads: 1
stages:
  finetune: {{name: train}}
"""


def write_ctc_corpus(root: Path) -> Path:
    """Eight labelled noisy tones (letters of two words each) and their dictionary."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    words = ["TEN", "NET", "EAT", "TEA", "ANT"]
    rows, labels = [], []
    for i in range(8):
        n = 8000 + 800 * i
        t = np.arange(n) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(n)
        sf.write(root / "audio" / f"u{i}.wav", wave.astype(np.float32), 16000)
        rows.append(f"u{i}.wav\t{n}")
        text = f"{words[i % 5]} {words[(i + 2) % 5]}"
        labels.append(" ".join("|" if c == " " else c for c in text) + " |")
    (root / "train.tsv").write_text(f"{root / 'audio'}\n" + "\n".join(rows) + "\n")
    (root / "train.ltr").write_text("\n".join(labels) + "\n")
    (root / "dict.ltr.txt").write_text("".join(f"{c} 10\n" for c in "|ETNAO"))
    return root / "train.tsv"


def test_ctc_at_a_huge_lr_exits_1_with_advice(tmp_path, run_w2vrun):
    manifest = write_ctc_corpus(tmp_path)
    recipe = tmp_path / "ctc.yaml"
    recipe.write_text(CTC_RECIPE.format(manifest=manifest, lr=10.0))
    result = run_w2vrun(str(recipe), "--out", str(tmp_path / "run"), timeout=300)
    assert result.code == 1, result.err[-3000:]
    assert "Traceback" not in result.err
    assert "warning: update" in result.err and "x its running average" in result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("w2vrun: training diverged at update 51"), last
    for advice in ("trainer.lr", "warm-up", "trainer.clip_norm", "divergence_window: 0"):
        assert advice in last
    assert not (tmp_path / "run" / "finetune" / "model.pt").exists()


def test_the_same_recipe_at_a_sane_lr_trains_to_the_end(tmp_path, run_w2vrun):
    manifest = write_ctc_corpus(tmp_path)
    recipe = tmp_path / "ctc.yaml"
    recipe.write_text(CTC_RECIPE.format(manifest=manifest, lr=1e-3).replace(
        "max_updates: 120", "max_updates: 80"))
    result = run_w2vrun(str(recipe), "--out", str(tmp_path / "run"), timeout=300)
    assert result.code == 0, result.err[-3000:]
    assert "running average" not in result.err
