"""What a training stage says at its start: audio per update, accumulation, passes over the
data (and a warning with the overrides that fit when one update is larger than the data); the
loader's worker cap; the progress bars (micro-batches inside an update) and their quiet mode."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import numpy as np
import pytest
import soundfile as sf
import torch

from w2v.data.config import DataConfig
from w2v.data.sources import build_loader
from w2v.train.batch_plan import BatchPlan
from w2v.train.progress import Progress

RATE = 16000


def tiny_manifest(root: Path, seconds=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)) -> Path:
    """Real audio files (noise) written with soundfile, and their fairseq manifest."""
    rng = np.random.default_rng(0)
    lines = [str(root)]
    for i, s in enumerate(seconds):
        n = int(s * RATE)
        sf.write(str(root / f"u{i}.wav"), (0.1 * rng.standard_normal(n)).astype(np.float32),
                 RATE)
        lines.append(f"u{i}.wav\t{n}")
    path = root / "train.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def plan_of(manifest: Path, *, max_tokens: int, update_freq: int, batch_seconds=None,
            device: str = "cpu") -> BatchPlan:
    data = DataConfig(train=str(manifest), max_tokens=max_tokens, max_sample_size=RATE,
                      min_sample_size=0, num_workers=0)
    loader, sampler = build_loader(data, "train")
    return BatchPlan.from_loader(loader, sampler, stage="pretrain", update_freq=update_freq,
                                 max_tokens=max_tokens, sample_rate=RATE,
                                 batch_seconds=batch_seconds, max_updates=10, device=device)


def test_summary_numbers_on_a_tiny_manifest(tmp_path):
    # 6 one-second utterances; 2 s per micro-batch -> 3 micro-batches per epoch
    plan = plan_of(tiny_manifest(tmp_path), max_tokens=2 * RATE, update_freq=2)
    assert plan.batches_per_epoch == 3 and plan.utterances == 6
    assert plan.data_seconds == pytest.approx(6.0)
    assert plan.seconds_per_batch == pytest.approx(2.0)
    assert plan.seconds_per_update == pytest.approx(4.0)
    assert plan.passes_per_update == pytest.approx(2 / 3) and not plan.too_large
    text = plan.summary()
    assert "one update = 2 micro-batches (trainer.update_freq)" in text
    assert "up to 4 s of audio" in text and "up to 2 s: data.max_tokens 32,000 at 16000 Hz" in text
    assert "6 s in 6 utterances, 3 micro-batches per epoch" in text
    assert "one update reads 0.667 epochs (an epoch is 1.5 updates)" in text
    assert "10 updates = 6.7 epochs" in text
    assert plan.warning() is None


def test_an_update_larger_than_the_data_warns_with_overrides_that_fit(tmp_path):
    manifest = tiny_manifest(tmp_path)
    # batch_seconds 8 with 2 s micro-batches -> 4 micro-batches per update, 3 per epoch
    plan = plan_of(manifest, max_tokens=2 * RATE, update_freq=4, batch_seconds=8.0)
    assert plan.too_large and plan.passes_per_update == pytest.approx(4 / 3)
    assert "(from trainer.batch_seconds 8)" in plan.summary()
    warning = plan.warning()
    assert "one update (4 micro-batches, up to 8 s of audio) is larger than the training data " \
           "(3 micro-batches, 6 s)" in warning
    assert "about 1.3 times" in warning
    fit = plan.fitting_overrides()
    # fewer than 4 micro-batches per epoch: a smaller micro-batch too (still >= one utterance)
    assert fit == ["trainer.batch_seconds=null", "data.max_tokens=24000"]   # 6 s / 4
    assert "`trainer.batch_seconds=null data.max_tokens=24000`" in warning
    assert "`stages.pretrain.` in front of each key" in warning
    assert "docs/troubleshooting.md" in warning
    # the overrides do fit: one micro-batch per update, one utterance each -> 1/6 epoch
    fitted = plan_of(manifest, max_tokens=24000, update_freq=1)
    assert not fitted.too_large and fitted.passes_per_update == pytest.approx(1 / 6)


def test_a_paper_sized_micro_batch_on_a_cpu_is_shrunk_in_the_advice():
    plan = BatchPlan(stage="pretrain", update_freq=64, max_tokens=1_400_000, sample_rate=RATE,
                     batch_seconds=5600, batches_per_epoch=21, data_samples=30 * 60 * RATE,
                     utterances=300, largest_item=250_000, max_updates=400_000, device="cpu")
    assert "up to 1.56 h of audio" in plan.summary()
    assert plan.fitting_overrides() == ["trainer.batch_seconds=null", "data.max_tokens=250000"]
    assert attrs.evolve(plan, device="cuda").fitting_overrides() == \
        ["trainer.batch_seconds=null"]


# --------------------------------------------------------------------------- workers


def test_num_workers_never_exceeds_the_cores_available(tmp_path, monkeypatch, caplog):
    from w2v.data import workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    workers._reported.clear()
    with caplog.at_level(logging.INFO, logger="w2v"):
        assert workers.usable_workers(1) == 1 and not caplog.records
        assert workers.usable_workers(6) == 2
    assert "data.num_workers 6 capped to 2: 2 CPU cores available" in caplog.text
    assert workers.usable_workers(6, local_world_size=2) == 1
    data = DataConfig(train=str(tiny_manifest(tmp_path)), max_tokens=2 * RATE,
                      max_sample_size=RATE, min_sample_size=0, num_workers=6)
    loader, _ = build_loader(data, "train")
    assert loader.num_workers == 2


# --------------------------------------------------------------------------- progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_cover_updates_and_the_micro_batches_inside_one(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    tty = FakeTTY()
    progress = Progress(stage="pretrain", total=4, micro_batches=3, stream=tty)
    assert progress.active
    for _ in range(2):
        progress.micro_batch_done()
    assert "micro-batches:  67%" in tty.getvalue() and "2/3" in tty.getvalue()
    progress.micro_batch_done()
    progress.update_done(0.5, 1)
    progress.close()
    assert "1/4" in tty.getvalue()


def test_progress_is_plain_text_under_ci_or_without_a_terminal(monkeypatch):
    monkeypatch.setenv("CI", "true")
    tty = FakeTTY()
    progress = Progress(stage="pretrain", total=100, micro_batches=3, stream=tty)
    assert not progress.active
    progress.micro_batch_done()
    progress.update_done(30.0, 1)
    progress.update_done(30.0, 2)
    assert tty.getvalue() == ("[pretrain] update 1 of 100 took 30 s (start-up included); the "
                              "99 left take about 49.5 min at this pace.\n")
    monkeypatch.delenv("CI")
    assert not Progress(stage="s", total=3, stream=io.StringIO()).active


def test_a_stage_prints_the_plan_and_the_warning_before_its_first_update(tmp_path):
    """``w2vrun`` on a tiny wav2vec 2.0 recipe (stderr is a pipe: plain lines)."""
    manifest = tiny_manifest(tmp_path)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        data: {{train: {manifest}, max_tokens: {2 * RATE}, max_sample_size: {RATE},
               min_sample_size: 0, num_workers: 0}}
        model:
          encoder: {{name: wav2vec2_conv, conv_layers: [[16, 10, 5], [16, 3, 2]]}}
          quantizer: {{name: gumbel, groups: 2, num_vars: 8, dim: 16}}
          aggregator: {{name: transformer, embed_dim: 16, layers: 1, ffn_dim: 32, heads: 2,
                        conv_pos: 4, conv_pos_groups: 2}}
          masker: {{name: span, mask_prob: 0.5, mask_length: 2}}
        objective: {{name: masked_contrastive, num_negatives: 4, final_dim: 8}}
        trainer: {{max_updates: 1, batch_seconds: 8, device: cpu, num_threads: 1}}
        stages: {{pretrain: {{name: pretrain}}}}
        """))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "w2v.cli", str(recipe), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    plan = next(i for i, line in enumerate(lines) if "one update = 4 micro-batches" in line)
    warning = next(i for i, line in enumerate(lines) if "is larger than the training data" in line)
    first = next(i for i, line in enumerate(lines) if "update 1 of 1 took" in line)
    assert plan < warning < first
    assert lines[warning].startswith("[pretrain] warning:")
    assert "trainer.batch_seconds=null" in lines[warning]
