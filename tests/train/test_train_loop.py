"""The training loop on CPU: logging, validation, normalisation, health, precision, composite
training, freezing, parameter groups, restore and checkpoint errors."""

from __future__ import annotations

import math

import argparse
import io
import json
import sys
from pathlib import Path

import attrs
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_toys import (ToyDataset, ToyGanObjective, ToyModel, ToyObjective,  # noqa: E402
                          loader_factory, valid_batches)
from w2v.errors import ConfigError, UserError  # noqa: E402
from w2v.interfaces import Batch  # noqa: E402
from w2v.train import (CheckpointError, GroupOptimizerConfig, ParamGroupConfig,  # noqa: E402
                       RestoreConfig, ScheduleConfig, Trainer, TrainerConfig, TrainingDiverged,
                       load_checkpoint)
from w2v.plugins.quantizers.health import CodebookCollapse  # noqa: E402
from w2v.plugins.wav2vec2.health import ContrastiveAtChance  # noqa: E402
from w2v.train.health import HealthMonitor  # noqa: E402
from w2v.train.rng import reseed, update_seed  # noqa: E402


def config(**kw) -> TrainerConfig:
    base = dict(device="cpu", max_updates=8, lr=5e-3, num_threads=1, log_interval=4,
                save_interval=0, schedule=ScheduleConfig(name="fixed"))
    base.update(kw)
    return TrainerConfig(**base)


def trainer(tmp_path, cfg=None, *, model=None, objective=None, data=None, **kw) -> Trainer:
    torch.manual_seed(0)
    return Trainer(cfg or config(), model or ToyModel(), objective or ToyObjective(),
                   loader_factory(data or ToyDataset(32), batch_size=4), run_dir=tmp_path,
                   tensorboard=False, **kw)


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Snapshots:
    """Parameter copies after every update."""

    def __init__(self) -> None:
        self.after: list[dict[str, torch.Tensor]] = []

    def on_fit_start(self, trainer):
        self.start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}

    def on_update_end(self, trainer, record):
        self.after.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})


def test_metrics_validation_and_checkpoint_rotation(tmp_path):
    cfg = config(max_updates=12, log_interval=4, valid_interval=6, save_interval=4, keep_last=2)
    t = trainer(tmp_path, cfg, valid_data=valid_batches(16, 8))
    summary = t.fit()
    lines = read_metrics(tmp_path / "metrics.jsonl")
    train = [r for r in lines if r["split"] == "train"]
    valid = [r for r in lines if r["split"] == "valid"]
    assert [r["step"] for r in train] == [4, 8, 12]
    assert [r["step"] for r in valid] == [6, 12]
    for r in train:
        assert {"stage", "step", "loss", "lr", "step_time_s", "grad_norm", "masked_frac",
                "epoch"} <= set(r)
        assert r["stage"] == "train" and r["loss"] > 0 and r["step_time_s"] > 0
        assert r["n_utts"] == 16  # a count: summed over the interval's 4 updates x 4 utterances
    assert all(r["n_utts"] == 16 for r in valid)  # summed over both validation batches
    # validation: sum of losses over the sum of sample sizes, as recomputed here
    reseed(update_seed(cfg.seed, 12, 0, stream=1))
    t.model.eval(), t.objective.eval()
    with torch.no_grad():
        outs = [t.objective(b, t.model, 12) for b in valid_batches(16, 8)]
    expected = sum(o.loss.item() for o in outs) / sum(o.sample_size.item() for o in outs)
    assert valid[-1]["loss"] == pytest.approx(expected, rel=1e-6)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["best.pt", "last.pt", "update_12.pt", "update_8.pt"]
    assert summary.updates == 12 and summary.stop_reason == "max_updates"
    assert summary.best_update in (6, 12) and summary.best_value == min(r["loss"] for r in valid)
    state = load_checkpoint(summary.last_checkpoint)
    assert state["trainer"]["num_updates"] == 12 and state["stage"] == "train"
    assert state["config"]["max_updates"] == 12 and "plugins" in state


def test_gradients_are_summed_losses_over_the_sample_size(tmp_path):
    captured = {}

    class Capture:
        def on_before_optimizer_step(self, trainer, update, group):
            if update == 0:
                captured.update({n: p.grad.clone() for n, p in trainer.model.named_parameters()})

    data = ToyDataset(32)
    t = trainer(tmp_path, config(max_updates=1, update_freq=2), model=ToyModel(dropout=0.0),
                objective=ToyObjective(injected=True), data=data, callbacks=[Capture()])
    torch.manual_seed(0)
    model, objective = ToyModel(dropout=0.0), ToyObjective(injected=True)
    model.load_state_dict(t.model.state_dict()), objective.load_state_dict(t.objective.state_dict())
    t.fit()
    loader, _ = loader_factory(data, batch_size=4)(0, None)
    batches = [b for _, b in zip(range(2), loader)]
    outs = [objective(b, model, 0) for b in batches]
    total = sum(o.sample_size for o in outs)
    sum(o.loss for o in outs).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(captured[n], p.grad / total, rtol=1e-5, atol=1e-8)


def test_update_counts_reach_model_and_objective(tmp_path):
    seen = []

    class Watch:
        def on_before_optimizer_step(self, trainer, update, group):
            seen.append((update, trainer.model.counter.num_updates,
                         trainer.objective.counter.num_updates))

    t = trainer(tmp_path, config(max_updates=5), callbacks=[Watch()])
    t.fit()
    assert seen == [(u, u, u) for u in range(5)]
    assert t.model.counter.max_updates == 5 and t.objective.counter.max_updates == 5


def test_nan_batch_is_skipped_and_training_continues(tmp_path, capsys):
    data = ToyDataset(32, nan_ids=(5,))
    records = []

    class Watch:
        def on_update_end(self, trainer, record):
            records.append(record)

    t = trainer(tmp_path, config(max_updates=10, log_interval=1), data=data, callbacks=[Watch()])
    summary = t.fit()
    skipped = [r for r in records if not r.stepped]
    assert len(skipped) >= 1 and summary.skipped_updates == len(skipped)
    assert summary.updates == 10
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    assert "non-finite loss" in capsys.readouterr().err
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert steps == list(range(1, 11))  # skipped updates are not counted or logged


def test_consecutive_nonfinite_updates_stop_the_run(tmp_path):
    data = ToyDataset(32, nan_ids=tuple(range(32)))
    t = trainer(tmp_path, config(max_updates=10, max_nonfinite=3), data=data)
    with pytest.raises(TrainingDiverged) as info:
        t.fit()
    assert not isinstance(info.value, UserError) and info.value.exit_code == 1
    assert "non-finite in 3 consecutive updates" in str(info.value)
    assert "lr" in str(info.value) and t.num_updates == 0


def test_health_monitor_overflow_and_collapse():
    warnings = []
    h = HealthMonitor(max_nonfinite=2, collapse_window=3, checks=[CodebookCollapse(groups=2)],
                      warn=warnings.append)
    # fp16 gradient overflow with a finite loss: skipped, not counted as divergence
    for _ in range(5):
        assert h.record(1, 1.0, float("inf"), fp16=True, loss_scale=1024.0) is False
    assert h.nonfinite_in_a_row == 0 and h.overflows_total == 5
    with pytest.raises(TrainingDiverged, match="loss scale"):
        h.record(1, 1.0, float("inf"), fp16=True, loss_scale=1e-5)
    for u in range(1, 3):
        h.observe(u, {"code_perplexity": 2.1})
    assert not warnings
    h.observe(3, {"code_perplexity": 2.0})
    assert len(warnings) == 1 and "collapse" in warnings[0]
    h.observe(4, {"code_perplexity": 2.0})
    assert len(warnings) == 1  # once per episode
    h.observe(5, {"code_perplexity": 50.0, "num_groups": 2})
    for u in range(6, 9):
        h.observe(u, {"code_perplexity": 2.0})
    assert len(warnings) == 2


def test_partial_codebook_collapse_counts_against_the_codebook_size():
    warnings = []
    h = HealthMonitor(max_nonfinite=2, collapse_window=2,
                      checks=[CodebookCollapse(groups=2, num_codes=128)], warn=warnings.append)
    for u in (1, 2):
        h.observe(u, {"code_perplexity": 7.0})   # over 5 % of 128 codes: healthy
    assert not warnings
    for u in (3, 4):
        h.observe(u, {"code_perplexity": 4.0})   # 4 of 128 codes in use, far above the floor 2
    assert len(warnings) == 1 and "codebook collapse" in warnings[0]


def test_contrastive_loss_at_chance_warns_once_per_episode():
    warnings = []
    h = HealthMonitor(max_nonfinite=2, collapse_window=3, checks=[ContrastiveAtChance()],
                      warn=warnings.append)
    chance = math.log(51)
    for u in (1, 2):
        h.observe(u, {"contrastive": chance, "contrastive_chance": chance})
    h.observe(3, {"contrastive": 0.9 * chance, "contrastive_chance": chance})  # learning
    for u in (4, 5):
        h.observe(u, {"contrastive": chance + 0.01, "contrastive_chance": chance})
    assert not warnings
    h.observe(6, {"contrastive": chance, "contrastive_chance": chance})
    h.observe(7, {"contrastive": chance, "contrastive_chance": chance})
    assert len(warnings) == 1 and "at chance" in warnings[0] and "loss_weights" in warnings[0]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cpu(tmp_path, precision):
    dtypes = []

    class Dtype(ToyObjective):
        def forward(self, batch, output):
            dtypes.append(output.context.dtype)
            return super().forward(batch, output)

    snap = Snapshots()
    t = trainer(tmp_path, config(precision=precision, max_updates=4, log_interval=2),
                objective=Dtype(), callbacks=[snap])
    t.fit()
    expected = torch.float16 if precision == "fp16" else torch.bfloat16
    assert set(dtypes) == {expected}
    lines = read_metrics(tmp_path / "metrics.jsonl")
    assert all(r["loss"] is not None and r["loss"] > 0 for r in lines)
    w = "aggregator.conv.weight"
    assert not torch.equal(snap.start[w], snap.after[-1][w])
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    if precision == "fp16":
        assert all("loss_scale" in r for r in lines) and lines[0]["loss_scale"] > 0
        assert state["scaler"]["scale"] > 0
    else:
        assert "loss_scale" not in lines[0] and state["scaler"] == {}


def test_composite_mode_alternates_groups_with_separate_lrs(tmp_path):
    gan = ToyGanObjective()
    snap = Snapshots()
    disc = []

    class Disc:
        def on_update_end(self, trainer, record):
            disc.append(trainer.objective.disc.weight.detach().clone())

    cfg = config(max_updates=4, log_interval=2, group_optimizers={
        "generator": GroupOptimizerConfig(lr=1e-3, betas=(0.5, 0.98)),
        "discriminator": GroupOptimizerConfig(lr=4e-3)})
    t = trainer(tmp_path, cfg, objective=gan, callbacks=[snap, Disc()])
    t.fit()
    assert gan.groups_seen == ["generator", "discriminator"] * 2
    assert set(t.optimizers) == {"generator", "discriminator"}
    assert t.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3)
    assert t.optimizers["generator"].param_groups[0]["betas"] == (0.5, 0.98)
    assert t.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(4e-3)
    w = "aggregator.conv.weight"
    # generator updates (1st, 3rd) move the model, not the discriminator; odd ones the reverse
    assert not torch.equal(snap.start[w], snap.after[0][w])
    assert torch.equal(snap.after[0][w], snap.after[1][w])
    assert not torch.equal(snap.after[1][w], snap.after[2][w])
    assert not torch.equal(disc[0], disc[1]) and torch.equal(disc[1], disc[2])
    line = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert line["lr_generator"] == pytest.approx(1e-3) and \
        line["lr_discriminator"] == pytest.approx(4e-3)


def test_freeze_for_n_updates_and_throughout(tmp_path):
    snap = Snapshots()
    flags = []

    class Flag:
        def on_before_optimizer_step(self, trainer, update, group):
            flags.append(trainer.model.encoder.frozen)

    model = ToyModel()
    model.encoder.conv.bias.requires_grad_(False)  # never trainable: stays so after unfreezing
    t = trainer(tmp_path, config(max_updates=6, freeze=["aggregator.out"],
                                 freeze_updates={"encoder": 3}), model=model,
                callbacks=[snap, Flag()])
    t.fit()
    assert not model.encoder.conv.bias.requires_grad and model.encoder.conv.weight.requires_grad
    assert all(torch.equal(s["encoder.conv.bias"], snap.start["encoder.conv.bias"])
               for s in snap.after)
    enc, agg_frozen, agg_free = ("encoder.conv.weight", "aggregator.out.weight",
                                 "aggregator.conv.weight")
    assert flags == [True, True, True, False, False, False]  # the component's own flag
    for u in range(3):
        assert torch.equal(snap.after[u][enc], snap.start[enc])
    assert not torch.equal(snap.after[3][enc], snap.start[enc])
    assert all(torch.equal(s[agg_frozen], snap.start[agg_frozen]) for s in snap.after)
    assert not torch.equal(snap.after[0][agg_free], snap.start[agg_free])


def test_freeze_names_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="encodr") as info:
        trainer(tmp_path, config(freeze=["encodr"]))
    assert "encoder" in str(info.value)
    with pytest.raises(ConfigError, match="both frozen"):
        config(freeze=["encoder"], freeze_updates={"encoder": 10})


def test_param_group_lr_scale_and_weight_decay_rules(tmp_path):
    lrs = []

    class Lr:
        def on_before_optimizer_step(self, trainer, update, group):
            lrs.append({g["group"]: g["lr"] for g in trainer.optimizers["default"].param_groups})

    cfg = config(max_updates=3, weight_decay=0.1,
                 param_groups={"encoder": ParamGroupConfig(lr_scale=0.1)},
                 schedule=ScheduleConfig(name="polynomial", warmup=2))
    t = trainer(tmp_path, cfg, callbacks=[Lr()])
    t.fit()
    assert [round(x["default"], 8) for x in lrs] == [0.0, 2.5e-3, 5e-3]  # fairseq warmup
    for x in lrs:
        assert x["encoder"] == pytest.approx(0.1 * x["default"])
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["lr"] == pytest.approx(5e-3)
    # adam: decoupled decay on every parameter; adamw: none on biases and norm weights
    assert all(g["weight_decay"] == 0.1 for g in t.optimizers["default"].param_groups)
    t2 = trainer(tmp_path / "w", attrs.evolve(cfg, optimizer="adamw"))
    for g in t2.optimizers["default"].param_groups:
        assert g["weight_decay"] == (0.0 if all(p.ndim == 1 for p in g["params"]) else 0.1)
    assert any(g["weight_decay"] == 0.0 for g in t2.optimizers["default"].param_groups)


def test_unknown_param_group_prefix_is_a_config_error(tmp_path):
    cfg = config(param_groups={"encodr": ParamGroupConfig()})
    with pytest.raises(ConfigError, match="Did you mean `encoder`"):
        trainer(tmp_path, cfg)


def test_clip_norm_bounds_the_gradient(tmp_path):
    norms = []

    class Norm:
        def on_before_optimizer_step(self, trainer, update, group):
            norms.append(torch.nn.utils.get_total_norm(
                [p.grad for p in trainer.model.parameters() if p.grad is not None]).item())

    t = trainer(tmp_path, config(max_updates=3, clip_norm=0.01, log_interval=1),
                callbacks=[Norm()])
    t.fit()
    logged = [r["grad_norm"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert all(n <= 0.01 + 1e-6 for n in norms)
    assert all(n > 0.01 for n in logged)  # the log shows the norm before clipping


def test_early_stopping_on_a_metric(tmp_path):
    cfg = config(max_updates=50, valid_interval=2, early_stop_patience=2,
                 best_metric="n_utts", maximize=True)
    summary = trainer(tmp_path, cfg, valid_data=valid_batches(16, 8)).fit()
    # n_utts is 16 at every validation: best at 2, no improvement at 4 and 6
    assert summary.stop_reason == "early_stop" and summary.updates == 6
    assert summary.best_update == 2 and summary.best_value == 16
    with pytest.raises(ConfigError, match="best_metric"):
        trainer(tmp_path / "b", config(max_updates=2, valid_interval=2, best_metric="wer"),
                valid_data=valid_batches(8, 8)).fit()


class BiggerModel(ToyModel):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 3)


def test_restore_partial_load_with_resets(tmp_path, capsys):
    first = trainer(tmp_path / "a", config(max_updates=4))
    first.fit()
    saved = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    restore = RestoreConfig(path=str(tmp_path / "a"), reset_optimizer=True)
    snap = Snapshots()
    cfg = config(max_updates=2, restore=restore)
    t = trainer(tmp_path / "b", cfg, model=BiggerModel(), callbacks=[snap])
    summary = t.fit()
    report = summary.load_report
    assert report.new == ("head.bias", "head.weight") and report.dropped == ()
    assert "encoder.conv.weight" in report.loaded and "objective.proj.weight" in report.loaded
    for name, value in saved["model"].items():
        assert torch.equal(snap.start[name], value), name
    assert summary.updates == 2 and summary.resumed_from is None  # reset: counts from 0
    assert "new (initialised, not in the checkpoint): 2: head.bias, head.weight" in \
        capsys.readouterr().err
    # keeping the optimizer of a model that only partly fits is refused, with the fix named
    keep = RestoreConfig(path=str(tmp_path / "a"))
    cfg = config(max_updates=2, restore=keep)
    with pytest.raises(CheckpointError, match="reset_optimizer"):
        trainer(tmp_path / "c", cfg, model=BiggerModel()).fit()
    # the same model continues the update count and, with reset_lr_schedule, restarts the lr
    cfg = config(max_updates=6, schedule=ScheduleConfig(name="polynomial", warmup=2),
                 restore=RestoreConfig(path=str(tmp_path / "a"), reset_lr_schedule=True))
    t = trainer(tmp_path / "d", cfg)
    lrs = []
    t.callbacks.append(type("Lr", (), {"on_before_optimizer_step": lambda s, tr, u, g:
                                       lrs.append((u, tr.lr))})())
    t.fit()
    assert lrs[0] == (4, 0.0) and lrs[1] == (5, pytest.approx(2.5e-3))  # warmup from 0


def test_bad_checkpoints_are_user_errors(tmp_path):
    good = trainer(tmp_path / "a", config(max_updates=1))
    good.fit()
    last = tmp_path / "a" / "checkpoints" / "last.pt"
    data = last.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "fairseq.pt"
    torch.save({"args": argparse.Namespace(arch="wav2vec2"), "model": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a w2v trainer checkpoint"):
        load_checkpoint(foreign)
    plain = tmp_path / "plain.pt"
    torch.save({"cfg": {"model": {}}, "model": {}}, plain)
    with pytest.raises(CheckpointError, match="fairseq checkpoint"):
        load_checkpoint(plain)
    assert issubclass(CheckpointError, UserError)
    # a corrupt last.pt stops the resume with the same clear error
    last.write_bytes(data[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        trainer(tmp_path / "a", config(max_updates=2)).fit()


def test_collapse_warning_from_objective_stats(tmp_path, capsys):
    class Collapsed(ToyObjective):
        def health_checks(self):                 # a component's own check reaches the trainer
            return [CodebookCollapse()]

        def forward(self, batch, output):
            out = super().forward(batch, output)
            out.stats.update(code_perplexity=torch.tensor(2.05), num_groups=2)
            return out

    trainer(tmp_path, config(max_updates=5, collapse_window=4), objective=Collapsed()).fit()
    err = capsys.readouterr().err
    assert err.count("codebook collapse") == 1 and "update 4" in err


def test_device_selection_and_layerdrop_detection():
    from w2v.train.distributed import has_layerdrop
    from w2v.train.runtime import select_device
    assert select_device("cpu").type == "cpu"
    auto = select_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else
                         "mps" if torch.backends.mps.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            select_device("cuda")
    assert has_layerdrop(ToyModel(layerdrop=0.05)) and not has_layerdrop(ToyModel())


def test_valid_data_as_callable_and_batches_unchanged(tmp_path):
    calls = []

    def make_valid():
        calls.append(1)
        return valid_batches(8, 4)

    summary = trainer(tmp_path, config(max_updates=4, valid_interval=2),
                      valid_data=make_valid).fit()
    assert len(calls) == 2 and summary.last_valid["n_utts"] == 8


def test_empty_batch_still_steps(tmp_path):
    """A batch whose utterances were all skipped trains nothing but keeps the loop going."""
    base = loader_factory(ToyDataset(32), batch_size=4)

    def factory(epoch, state):
        loader, sampler = base(epoch, state)

        def batches():
            for i, b in enumerate(loader):
                yield b if i != 1 else Batch(source=b.source[:0], ids=b.ids[:0])
        return batches(), sampler

    records = []
    t = Trainer(config(max_updates=4), ToyModel(), ToyObjective(), factory, run_dir=tmp_path,
                tensorboard=False, callbacks=[type("R", (), {
                    "on_update_end": lambda self, tr, r: records.append(r)})()])
    assert t.fit().updates == 4
    assert [r.sample_size for r in records][1] == 0 and records[1].loss == 0.0
    assert all(r.sample_size > 0 for i, r in enumerate(records) if i != 1)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_progress_bar_on_a_tty_and_plain_lines_otherwise(tmp_path, monkeypatch):
    from w2v.train.metrics import MetricsLog

    monkeypatch.delenv("CI", raising=False)              # CI turns the bar off

    record = {"stage": "s", "split": "train", "step": 4, "loss": 1.5, "lr": 1e-3}
    tty = FakeTTY()
    log = MetricsLog(tmp_path / "m.jsonl", console=tty, total=10, stage="s")
    log.advance(4)
    log.write(record)
    log.close()
    assert "4/10" in tty.getvalue() and "loss 1.5" in tty.getvalue()
    plain = io.StringIO()
    log = MetricsLog(tmp_path / "m.jsonl", console=plain, total=10, stage="s")
    log.write(record)
    log.close()
    assert plain.getvalue() == "[s] update 4: loss 1.5 | lr 0.001\n"
    lines = read_metrics(tmp_path / "m.jsonl")
    assert lines == [record, record]
    quiet = io.StringIO()
    MetricsLog(tmp_path / "other.jsonl", console=quiet, enabled=False).write(record)
    assert quiet.getvalue() == "" and not (tmp_path / "other.jsonl").exists()


@pytest.mark.slow
def test_compile_keeps_names_and_numerics(tmp_path):
    """torch.compile (dynamic shapes) of the encoder and aggregator; slow on CPU (~30 s)."""
    losses = {}
    for compile_ in (False, True):
        # no dropout: inductor draws random numbers differently from eager mode
        torch.manual_seed(0)
        t = trainer(tmp_path / str(compile_), config(max_updates=2, log_interval=1,
                                                     compile=compile_), model=ToyModel(dropout=0))
        names = list(t.model.state_dict())
        t.fit()
        losses[compile_] = [r["loss"] for r in read_metrics(tmp_path / str(compile_) /
                                                             "metrics.jsonl")]
        assert list(t.model.state_dict()) == names
    assert t.compiled == ["encoder", "aggregator"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_one_reused_loader_across_epochs_and_resume(tmp_path):
    """``reusing_loader``: one DataLoader (persistent workers) for every epoch and resumes."""
    from torch.utils.data import DataLoader
    from trainer_toys import ToyBatchSampler, collate
    from w2v.train import reusing_loader

    def make():
        ds = ToyDataset(16)  # 4 batches per epoch
        sampler = ToyBatchSampler(len(ds), 4)
        return reusing_loader(DataLoader(ds, batch_sampler=sampler, collate_fn=collate), sampler)

    seen = []

    class Ids:
        def on_update_end(self, trainer, record):
            seen.append(trainer._stream.epoch)

    cfg = config(max_updates=6, save_interval=3)
    summary = Trainer(cfg, ToyModel(), ToyObjective(), make(), run_dir=tmp_path,
                      tensorboard=False, callbacks=[Ids()]).fit()
    assert summary.epoch == 1 and seen == [0, 0, 0, 0, 1, 1]
    state = load_checkpoint(tmp_path / "checkpoints" / "update_6.pt")["data"]
    assert state == {"epoch": 1, "consumed": 2, "sampler": {"epoch": 1, "consumed": 2}}
    more = Trainer(attrs.evolve(cfg, max_updates=8), ToyModel(), ToyObjective(), make(),
                   run_dir=tmp_path, tensorboard=False).fit()
    assert more.resumed_from == 6 and more.updates == 8 and more.epoch == 1
