"""trainer.activation_checkpointing (and trainer.compile) through the Trainer."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from w2v.recompute import recomputed
from w2v.train import ScheduleConfig, Trainer, TrainerConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_toys import ToyAggregator, ToyDataset, ToyModel, ToyObjective, loader_factory  # noqa: E402


class CheckpointableAggregator(ToyAggregator):
    """The toy aggregator, recomputed in backward when asked to."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__(dim, dropout)
        self.activation_checkpointing = False
        self.recomputations = 0

    def set_activation_checkpointing(self, enabled: bool) -> None:
        self.activation_checkpointing = enabled

    def forward(self, x):
        if self.activation_checkpointing and self.training:
            return recomputed(self.counting, x)
        return super().forward(x)

    def counting(self, x):
        self.recomputations += 1
        return ToyAggregator.forward(self, x)


def run(tmp_path: Path, **kw):
    torch.manual_seed(0)
    model = ToyModel(dropout=0.3)
    model.aggregator = CheckpointableAggregator(8, 0.3)
    cfg = TrainerConfig(device="cpu", max_updates=3, lr=5e-3, num_threads=1, log_interval=1,
                        save_interval=0, schedule=ScheduleConfig(name="fixed"), **kw)
    t = Trainer(cfg, model, ToyObjective(), loader_factory(ToyDataset(32), batch_size=4),
                run_dir=tmp_path, tensorboard=False)
    t.fit()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text()
              .splitlines() if "loss" in json.loads(line)]
    return t, losses


def test_activation_checkpointing_option_recomputes_and_trains_the_same(tmp_path):
    plain, want = run(tmp_path / "plain")
    assert plain.checkpointed == [] and plain.model.aggregator.recomputations == 0
    on, got = run(tmp_path / "on", activation_checkpointing=True)
    assert on.checkpointed == ["aggregator"]
    assert on.model.aggregator.recomputations == 6        # a forward and a recompute per update
    assert got == pytest.approx(want, rel=1e-6) and len(got) == 3
    for a, b in zip(on.model.parameters(), plain.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_activation_checkpointing_warns_when_no_component_supports_it(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="w2v.train"):
        t = Trainer(TrainerConfig(device="cpu", max_updates=1, num_threads=1,
                                  activation_checkpointing=True),
                    ToyModel(), ToyObjective(), loader_factory(ToyDataset(8)), run_dir=tmp_path,
                    tensorboard=False)
    assert t.checkpointed == []
    assert "activation_checkpointing" in caplog.text and "supports" in caplog.text
