"""The update-based training loop shared by every stage.

One update: tell the model and objective the update count, set the scheduled
lr, accumulate ``update_freq`` micro-batches (each forward reseeded from
``(seed, update, rank, micro-batch)``; DDP syncs only on the last), sum the
loss and sample size over ranks, scale gradients to ``sum / global sample
size``, clip, check health, and step the optimizer the objective chose.
Validation, logging and checkpoints happen between updates; everything that
influences later updates is in the checkpoint, so a resumed run repeats the
uninterrupted one exactly.

Example::

    trainer = Trainer(config, model, objective, make_loader, valid_data=valid_loader,
                      run_dir="runs/demo", stage="pretrain")
    summary = trainer.fit()
    print(summary.updates, summary.best_value, summary.last_checkpoint)
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import attrs
import torch
from torch import Tensor, nn

from ..errors import (ConfigError, UserError, check_writable, did_you_mean, is_out_of_memory,
                      out_of_memory_error)
from ..interfaces import Batch, run_model
from .batch_plan import BatchPlan
from .checkpoint import (FORMAT, FORMAT_VERSION, CheckpointDirectory, CheckpointError, LoadReport,
                         load_checkpoint, load_partial, to_plain)
from .config import RestoreConfig, TrainerConfig
from .data import BatchStream, LoaderFactory, ValidData
from .distributed import (all_gather_objects, all_reduce_sum, barrier, has_layerdrop,
                          init_distributed, wrap_ddp)
from .freeze import FreezePlan
from .divergence import detector_for
from .health import HealthMonitor
from .metrics import MetricsLog, TrainMeter, WeightedMeter
from .optim import build_optimizers
from .precision import Precision
from .rng import capture_rng_state, reseed, restore_rng_state, update_seed
from .compiling import compile_model
from .runtime import configure_threads, enable_activation_checkpointing, select_device
from .schedules import build_lr_schedule


class TrainStep(nn.Module):
    """The model and objective as one module, so that DDP sees the forward that builds the loss
    (its gradient hooks are armed there) and syncs objective parameters too.

    An empty batch (every utterance skipped as a bad input) gives a zero loss that touches
    every trainable parameter, so all ranks still take part in the gradient all-reduce.
    """

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch: Batch, step: int):
        if batch.source.shape[0] == 0:
            touched = [p.reshape(-1)[:1] for p in self.parameters() if p.requires_grad]
            zero = torch.cat(touched).sum() * 0.0 if touched else batch.source.new_zeros(())
            return zero, 0, {}, None
        out = forward_and_score(self.model, self.objective, batch, step)
        return out.loss, out.sample_size, out.stats, out.group


def forward_and_score(model: nn.Module, objective: nn.Module, batch: Batch, step: int):
    """One micro-batch: the model's forward as the objective requests it, then the
    objective scores that output (:class:`~w2v.interfaces.ObjectiveOutput`)."""
    output = run_model(model, batch, objective.request(batch, model, step))
    return objective(batch, output)


class TrainerCallback(Protocol):
    """Optional hooks; define any subset (all receive the trainer first).

    ``on_fit_start(trainer)``, ``on_update_start(trainer, update)``,
    ``on_before_optimizer_step(trainer, update, group)`` (gradients final:
    reduced, normalised, clipped), ``on_update_end(trainer, record)``,
    ``on_validation_end(trainer, stats)``, ``on_checkpoint(trainer, path)``,
    ``on_fit_end(trainer, summary)``.
    """


@attrs.frozen(kw_only=True)
class UpdateRecord:
    """One update as the loop saw it (``update``: updates done after it)."""

    update: int
    stepped: bool
    loss: float
    sample_size: float
    grad_norm: float
    lr: float
    time_s: float
    group: str | None
    stats: dict[str, float]


@attrs.frozen(kw_only=True)
class FitSummary:
    """What :meth:`Trainer.fit` returns."""

    stage: str
    updates: int
    epoch: int
    stop_reason: str
    best_metric: str
    best_value: float | None
    best_update: int | None
    last_valid: dict[str, float] | None
    run_dir: Path
    metrics_path: Path | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    resumed_from: int | None
    load_report: LoadReport | None
    skipped_updates: int


def _as_tensor(value: Any, device: torch.device) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().float().reshape(())
    return torch.tensor(float(value), device=device)


class Trainer:
    """Trains ``model`` with ``objective`` for ``config.max_updates`` updates.

    Args:
        config: the ``trainer:`` section.
        model: the model (usually a :class:`~w2v.model.SpeechModel`).
        objective: the loss (a :class:`~w2v.interfaces.Objective`).
        train_data: ``factory(epoch, sampler_state) -> (loader, sampler)``; each rank's
            loader yields that rank's batches.
        run_dir: the run directory (``metrics.jsonl`` and ``checkpoints/`` by default).
        valid_data: validation batches (an iterable, or a callable returning one).
        stage: the stage id written into every log line and checkpoint.
        checkpoint_dir: where checkpoints go (default ``run_dir/checkpoints``).
        metrics_path: the JSONL file (default ``run_dir/metrics.jsonl``).
        max_tokens, sample_rate: the data's batch size in samples and rate, needed when
            ``config.batch_seconds`` derives ``update_freq``.
        recipe: the resolved recipe, stored in checkpoints.
        callbacks: objects with any of the :class:`TrainerCallback` hooks.
        tensorboard: write TensorBoard events when TensorBoard is installed.
    """

    def __init__(self, config: TrainerConfig, model: nn.Module, objective: nn.Module,
                 train_data: LoaderFactory, *, run_dir: str | Path,
                 valid_data: ValidData | None = None, stage: str = "train",
                 checkpoint_dir: str | Path | None = None, metrics_path: str | Path | None = None,
                 max_tokens: int | None = None, sample_rate: int | None = None,
                 recipe: Mapping[str, Any] | None = None, callbacks: Sequence[Any] = (),
                 tensorboard: bool = True) -> None:
        self.config = config
        self.stage = stage
        self.run_dir = Path(run_dir)
        self.checkpoints = CheckpointDirectory(
            Path(checkpoint_dir) if checkpoint_dir is not None else self.run_dir / "checkpoints",
            config.keep_last)
        self.metrics_path = Path(metrics_path) if metrics_path is not None \
            else self.run_dir / "metrics.jsonl"
        self.tensorboard_dir = self.run_dir / "tensorboard" / stage if tensorboard else None
        self.train_data = train_data
        self.valid_data = valid_data
        self.recipe = recipe
        self.callbacks = list(callbacks)

        from .distributed import detect
        self.device = select_device(config.device, detect().local_rank)
        self.dist = init_distributed(self.device)
        self.num_threads = configure_threads(config.num_threads, self.dist.local_world_size)
        self.model = model.to(self.device)
        self.objective = objective.to(self.device)
        self.precision = Precision(config.precision, self.device)
        self.max_tokens = max_tokens
        self.update_freq = config.resolve_update_freq(max_tokens, sample_rate,
                                                      self.dist.world_size)
        self.sample_rate = sample_rate

        groups = objective.parameter_groups(model) if hasattr(objective, "parameter_groups") \
            else None
        self.composite = {k: list(v) for k, v in groups.items()} if groups is not None else None
        self.optimizers = build_optimizers(self.model, self.objective, config, self.composite)
        self._group_params = {g: [p for pg in o.param_groups for p in pg["params"]]
                              for g, o in self.optimizers.items()}
        self.peak_lr = {g: self._group_lr(g) for g in self.optimizers}
        self.schedules = {g: build_lr_schedule(config.schedule, lr, config.max_updates)
                          for g, lr in self.peak_lr.items()}
        self.current_lr = dict(self.peak_lr)
        self.freeze = FreezePlan(self.model, self.objective, config.freeze, config.freeze_updates,
                                 config.max_updates)
        checks = [c for m in self._modules_with("health_checks") for c in m.health_checks()]
        self.health = HealthMonitor(config.max_nonfinite, config.collapse_window, checks,
                                    warn=self._warn, divergence=detector_for(
                                        objective, config.divergence_window,
                                        config.divergence_factor))
        self.maximize = config.maximize if config.maximize is not None else \
            config.best_metric in tuple(getattr(objective, "higher_is_better", ()))

        self.num_updates = 0
        self.schedule_offset = 0
        self.best_value: float | None = None
        self.best_update: int | None = None
        self.bad_validations = 0
        self.last_valid: dict[str, float] | None = None
        self._stream: BatchStream | None = None
        self._log: MetricsLog | None = None
        self._best_pending = False
        self._counted = self._modules_with("set_num_updates")
        for m in self._modules_with("set_max_updates"):
            m.set_max_updates(config.max_updates)
        self.compiled_regions = compile_model(self.model, self._warn) if config.compile else None
        self.compiled = self.compiled_regions.names if self.compiled_regions is not None else []
        self.checkpointed = enable_activation_checkpointing(self.model) \
            if config.activation_checkpointing else []
        if config.activation_checkpointing and not self.checkpointed:
            self._warn("trainer.activation_checkpointing: no component of this model supports "
                       "it (the Transformer and Conformer context networks do); training keeps "
                       "every activation.")
        self.step_module: nn.Module = TrainStep(self.model, self.objective)

    # ------------------------------------------------------------------ helpers
    def _modules_with(self, method: str) -> list[Any]:
        out = []
        for root in (self.model, self.objective):
            if hasattr(root, method):
                out.append(root)  # SpeechModel forwards to its parts itself
            else:
                out += [m for m in root.modules() if m is not root and hasattr(m, method)]
        return out

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    def _warn(self, text: str) -> None:
        if self.dist.is_main:
            if self._log is not None:
                self._log.message(f"[{self.stage}] warning: {text}")
            else:
                import logging
                logging.getLogger("w2v.train").warning(text)

    def _message(self, text: str) -> None:
        if self.dist.is_main and self._log is not None:
            self._log.message(f"[{self.stage}] {text}")

    def _group_lr(self, group: str) -> float:
        override = self.config.group_optimizers.get(group)
        return override.lr if override is not None and override.lr is not None \
            else self.config.lr

    @property
    def lr(self) -> float:
        """The scheduled lr of the first optimizer (before any component's ``lr_scale``)."""
        return self.current_lr[next(iter(self.optimizers))]

    # ------------------------------------------------------------------ fit
    def fit(self) -> FitSummary:
        """Train until ``max_updates`` (or early stopping); returns a :class:`FitSummary`."""
        config = self.config
        if self.dist.is_main:  # before any compute: a read-only folder fails now, not at a save
            check_writable(self.checkpoints.root)
            check_writable(self.metrics_path.parent)
        resumed_from, report, data_state = self._resume_or_restore()
        self.freeze.prepare_for_ddp()
        find_unused = config.find_unused_parameters
        if find_unused is None:
            find_unused = has_layerdrop(self.model) or self.freeze.needs_unused_parameter_search \
                or self.composite is not None
        self.step_module = wrap_ddp(TrainStep(self.model, self.objective), self.device,
                                    find_unused)
        self.freeze.apply(self.num_updates)
        self._stream = BatchStream(self._describing(self.train_data),
                                   seed=update_seed(config.seed, 0, self.dist.rank, stream=2),
                                   **data_state)
        self._log = MetricsLog(self.metrics_path, tensorboard_dir=self.tensorboard_dir,
                               enabled=self.dist.is_main, total=config.max_updates,
                               initial=self.num_updates, stage=self.stage,
                               micro_batches=self.update_freq)
        if resumed_from is not None:
            self._message(f"resumed from {self.checkpoints.last} at update {resumed_from}")
        if report is not None:
            self._message(f"restored from {config.restore.path}: {report.describe()}")
        if frozen := self.freeze.frozen_names():
            self._message(f"frozen: {', '.join(frozen)}")
        self.model.train()
        self.objective.train()
        self._call("on_fit_start")
        meter = TrainMeter()
        stop_reason = "max_updates"
        last_saved = resumed_from
        last_validated = resumed_from
        try:
            while self.num_updates < config.max_updates:
                record = self._update(self._stream)
                self._call("on_update_end", record)
                if not record.stepped:
                    continue
                u = self.num_updates
                meter.add(loss_sum=record.loss * record.sample_size,
                          sample_size=record.sample_size, grad_norm=record.grad_norm,
                          time_s=record.time_s, stats=record.stats)
                self._log.progress.update_done(record.time_s, u)
                if u % config.log_interval == 0:
                    self._write_train(meter)
                stop = False
                if self.valid_data is not None and config.valid_interval and \
                        u % config.valid_interval == 0:
                    stop = self._validate_and_track()
                    last_validated = u
                if config.save_interval and u % config.save_interval == 0:
                    self.save()
                    last_saved = u
                if stop:
                    stop_reason = "early_stop"
                    self._message(f"early stop: `{config.best_metric}` did not improve in "
                                  f"{self.bad_validations} validations")
                    break
            if meter.updates:
                self._write_train(meter)
            if self.valid_data is not None and last_validated != self.num_updates:
                self._validate_and_track()
            if last_saved != self.num_updates or not self.checkpoints.last.exists():
                self.save()
            barrier()
            summary = FitSummary(
                stage=self.stage, updates=self.num_updates, epoch=self._stream.epoch,
                stop_reason=stop_reason, best_metric=config.best_metric,
                best_value=self.best_value, best_update=self.best_update,
                last_valid=self.last_valid, run_dir=self.run_dir,
                metrics_path=self.metrics_path if self.dist.is_main else None,
                last_checkpoint=self.checkpoints.last,
                best_checkpoint=self.checkpoints.best if self.checkpoints.best.exists() else None,
                resumed_from=resumed_from, load_report=report,
                skipped_updates=self.health.skipped_total)
            self._call("on_fit_end", summary)
            return summary
        except (RuntimeError, MemoryError) as exc:
            if is_out_of_memory(exc):
                raise self._out_of_memory(exc) from None
            raise
        finally:
            self._log.close()
            self._stream.close()

    def _out_of_memory(self, exc: BaseException) -> UserError:
        tokens = f" (now {self.max_tokens:,} samples per batch)" if self.max_tokens else ""
        return out_of_memory_error(
            exc, f"in stage `{self.stage}` at update {self.num_updates + 1}",
            f"Lower `data.max_tokens`{tokens} or `data.max_sample_size` (the longest "
            f"utterance in samples); to keep the batch per update, raise `trainer.update_freq` "
            f"(now {self.update_freq}) by the same factor.")

    def _describing(self, factory: LoaderFactory) -> LoaderFactory:
        """``factory``, saying what one update is (:mod:`.batch_plan`) when it first opens."""
        described = False

        def opening(epoch: int, sampler_state: Mapping[str, Any] | None):
            nonlocal described
            loader, sampler = factory(epoch, sampler_state)
            if not described:
                described = True
                plan = BatchPlan.from_loader(
                    loader, sampler, stage=self.stage, update_freq=self.update_freq,
                    world_size=self.dist.world_size, max_tokens=self.max_tokens,
                    sample_rate=self.sample_rate, batch_seconds=self.config.batch_seconds,
                    max_updates=self.config.max_updates, device=self.device.type)
                self._message(plan.summary())
                if (warning := plan.warning()) is not None:
                    self._warn(warning)
            return loader, sampler

        return opening

    # ------------------------------------------------------------------ one update
    def _prepare_update(self, update: int) -> None:
        for m in self._counted:
            m.set_num_updates(update)
        step = update - self.schedule_offset
        for g, opt in self.optimizers.items():
            factor = self.schedules[g](step)
            self.current_lr[g] = self.peak_lr[g] * factor
            for pg in opt.param_groups:
                pg["lr"] = pg["peak_lr"] * factor
        for name in self.freeze.apply(update):
            state = "frozen" if name in self.freeze.frozen_names() else "unfrozen"
            self._message(f"update {update}: `{name}` {state}")
            if self.health.divergence is not None:  # other parameters train: a new level
                self.health.divergence.reset()

    def _group_for(self, update: int) -> str:
        if self.composite is None:
            return "default"
        group = self.objective.group_for_step(update)
        if group not in self.optimizers:
            raise RuntimeError(f"objective {type(self.objective).__name__}.group_for_step("
                               f"{update}) returned {group!r}, not one of its parameter groups "
                               f"{sorted(self.optimizers)}")
        return group

    def _update(self, stream: BatchStream) -> UpdateRecord:
        """One update (or a skipped attempt, when the loss or gradients are not finite)."""
        start = time.perf_counter()
        update = self.num_updates
        self._call("on_update_start", update)
        self._prepare_update(update)
        group = self._group_for(update)
        optimizer = self.optimizers[group]
        losses, sizes, stats_list = self._accumulate(stream, update, group)
        totals = all_reduce_sum(torch.stack([torch.stack(losses).sum(), torch.stack(sizes).sum()]))
        grad_norm = self._finish_gradients(group, totals[1])
        self._call("on_before_optimizer_step", update, group)
        loss_sum, sample_size, norm, update_stats = self._to_host(totals, grad_norm, sizes,
                                                                  stats_list)
        fp16 = self.precision.scaler is not None
        ok = self.health.record(update + 1, loss_sum, norm, fp16=fp16,
                                loss_scale=self.precision.loss_scale
                                if fp16 and not math.isfinite(norm) else None,
                                sample_size=sample_size, group=group)
        if ok:
            self.precision.step(optimizer)
        self.precision.update()
        self.step_module.zero_grad(set_to_none=True)  # every group's, and unoptimised ones
        if ok:
            self.num_updates += 1
            self.health.observe(self.num_updates, update_stats)
        return UpdateRecord(update=self.num_updates, stepped=ok,
                            loss=loss_sum / sample_size if sample_size > 0 else loss_sum,
                            sample_size=sample_size, grad_norm=norm, lr=self.current_lr[group],
                            time_s=time.perf_counter() - start,
                            group=group if self.composite is not None else None,
                            stats=update_stats)

    def _accumulate(self, stream: BatchStream, update: int, group: str
                    ) -> tuple[list[Tensor], list[Tensor], list[Mapping[str, Any]]]:
        """Forward and backward ``update_freq`` micro-batches; DDP syncs on the last one."""
        ddp = hasattr(self.step_module, "no_sync")
        losses: list[Tensor] = []
        sizes: list[Tensor] = []
        stats_list: list[Mapping[str, Any]] = []
        non_blocking = self.device.type == "cuda"
        for i in range(self.update_freq):
            batch = stream.next().to(self.device, non_blocking=non_blocking)
            reseed(update_seed(self.config.seed, update, self.dist.rank, micro=i), self.device)
            sync = i == self.update_freq - 1
            with (self.step_module.no_sync() if ddp and not sync else contextlib.nullcontext()):
                with self.precision.autocast():
                    loss, sample_size, stats, out_group = self.step_module(batch, update)
                if out_group is not None and self.composite is not None and out_group != group:
                    raise RuntimeError(f"the objective trained group {out_group!r} at update "
                                       f"{update}, but group_for_step said {group!r}")
                self.precision.backward(loss)
            losses.append(loss.detach().float())
            sizes.append(_as_tensor(sample_size, self.device))
            stats_list.append(stats)
            if self._log is not None:
                self._log.progress.micro_batch_done()
        return losses, sizes, stats_list

    def _finish_gradients(self, group: str, global_size: Tensor) -> Tensor:
        """Unscale (fp16), scale to ``sum / global sample size`` (DDP averaged over ranks,
        hence ``x world_size``), clip; returns the norm before clipping (a device tensor)."""
        params = self._group_params[group]
        self.precision.unscale_(self.optimizers[group])
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, self.dist.world_size / global_size.clamp(min=1.0))
        if self.config.clip_norm > 0:
            return nn.utils.clip_grad_norm_(params, self.config.clip_norm)
        return nn.utils.get_total_norm(grads) if grads else global_size.new_zeros(())

    @staticmethod
    def _to_host(totals: Tensor, grad_norm: Tensor, sizes: list[Tensor],
                 stats_list: list[Mapping[str, Any]]
                 ) -> tuple[float, float, float, dict[str, float]]:
        """One device-to-host transfer: global loss sum and sample size, gradient norm, and the
        micro-batches' stats aggregated (weighted by their local sample sizes)."""
        where, tensors = [], []
        for j, stats in enumerate(stats_list):
            for k, v in stats.items():
                if isinstance(v, Tensor):
                    where.append((j, k))
                    tensors.append(v.detach().float().reshape(()).to(totals.device))
        values = torch.stack([totals[0], totals[1], grad_norm.float().to(totals.device),
                              *sizes, *tensors]).tolist()
        local_sizes = values[3:3 + len(sizes)]
        per_batch: list[dict[str, float]] = [
            {k: float(v) for k, v in stats.items() if not isinstance(v, Tensor)}
            for stats in stats_list]
        for (j, k), v in zip(where, values[3 + len(sizes):]):
            per_batch[j][k] = v
        meter = WeightedMeter()
        for stats, weight in zip(per_batch, local_sizes):
            meter.add(stats, weight)
        return values[0], values[1], values[2], meter.result()

    # ------------------------------------------------------------------ logging
    def _write_train(self, meter: TrainMeter) -> None:
        result = meter.result()
        record: dict[str, Any] = {"stage": self.stage, "split": "train", "step": self.num_updates,
                                  "epoch": self._stream.epoch if self._stream else 0,
                                  "loss": result.pop("loss"), "lr": self.lr,
                                  "step_time_s": result.pop("step_time_s"),
                                  "grad_norm": result.pop("grad_norm")}
        if self.composite is not None:
            for g, lr in self.current_lr.items():
                record[f"lr_{g}"] = lr
        if self.precision.scaler is not None:
            record["loss_scale"] = self.precision.loss_scale
        record.update({k: v for k, v in result.items() if k not in record})
        self._log.write(record)
        meter.reset()

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """Run the validation data; stats are sample-size-weighted over batches and ranks."""
        data = self.valid_data() if callable(self.valid_data) else self.valid_data
        reseed(update_seed(self.config.seed, self.num_updates, self.dist.rank, stream=1),
               self.device)
        self.model.eval()
        self.objective.eval()
        meter = WeightedMeter()
        loss_sum = 0.0
        size_sum = 0.0
        try:
            with torch.no_grad(), self.precision.autocast():
                for batch in data:
                    out = forward_and_score(self.model, self.objective, batch.to(self.device),
                                            self.num_updates)
                    names = [k for k, v in out.stats.items() if isinstance(v, Tensor)]
                    vals = torch.stack([out.loss.detach().float().reshape(()),
                                        _as_tensor(out.sample_size, out.loss.device),
                                        *[out.stats[k].detach().float().reshape(())
                                          for k in names]]).tolist()
                    stats = {k: float(v) for k, v in out.stats.items() if k not in names}
                    stats.update(zip(names, vals[2:]))
                    loss_sum += vals[0]
                    size_sum += vals[1]
                    meter.add(stats, vals[1])
        finally:
            self.model.train()
            self.objective.train()
        total = WeightedMeter()
        loss_sum_all = size_sum_all = 0.0
        for rank_loss, rank_size, state in all_gather_objects((loss_sum, size_sum, meter.state())):
            loss_sum_all += rank_loss
            size_sum_all += rank_size
            total.merge(WeightedMeter.from_state(state))
        result = {"loss": loss_sum_all / size_sum_all if size_sum_all > 0 else float("nan"),
                  "sample_size": size_sum_all}
        result.update({k: v for k, v in total.result().items() if k not in result})
        finalize = getattr(self.objective, "finalize_stats", None)
        if finalize is not None:
            result = dict(finalize(result))
        return result

    def _validate_and_track(self) -> bool:
        """Validate, log, update best/early stopping; True when training should stop."""
        stats = self.validate()
        self.last_valid = stats
        metric = self.config.best_metric
        if metric not in stats:
            raise ConfigError(f"`{metric}` is not a validation stat of objective "
                              f"{type(self.objective).__name__}.", key="trainer.best_metric",
                              hint=did_you_mean(metric, sorted(stats), "stats"))
        value = stats[metric]
        improved = value == value and (
            self.best_value is None or
            (value > self.best_value if self.maximize else value < self.best_value))
        if improved:
            self.best_value, self.best_update = value, self.num_updates
            self.bad_validations = 0
        else:
            self.bad_validations += 1
        record = {"stage": self.stage, "split": "valid", "step": self.num_updates,
                  "epoch": self._stream.epoch if self._stream else 0, **stats,
                  f"best_{metric}": self.best_value}
        self._log.write(record)
        self._call("on_validation_end", stats)
        if improved and self.dist.is_main:
            save_due = self.config.save_interval and \
                self.num_updates % self.config.save_interval == 0
            if save_due:
                self._best_pending = True  # save() links best.pt to the periodic file
            else:
                self.checkpoints.mark_best(self.state_dict(), self.num_updates)
        patience = self.config.early_stop_patience
        return bool(patience) and self.bad_validations >= patience

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (see :mod:`w2v.train.checkpoint`)."""
        from ..plugin_manager import plugins

        try:
            versions = plugins().versions()
        except Exception:  # a broken plugin set must not stop a checkpoint
            versions = {}
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "stage": self.stage,
            "model": self.model.state_dict(), "objective": self.objective.state_dict(),
            "optimizers": {g: o.state_dict() for g, o in self.optimizers.items()},
            "scaler": self.precision.state_dict(),
            "trainer": {"num_updates": self.num_updates, "schedule_offset": self.schedule_offset,
                        "best_value": self.best_value, "best_update": self.best_update,
                        "bad_validations": self.bad_validations,
                        "health": self.health.state_dict()},
            "data": to_plain(self._stream.state_dict()) if self._stream is not None else None,
            "rng": capture_rng_state(),
            "config": to_plain(attrs.asdict(self.config, recurse=True)),
            "recipe": to_plain(dict(self.recipe)) if self.recipe is not None else None,
            "plugins": versions, "torch": str(torch.__version__),
        }

    def save(self) -> Path | None:
        """Write ``update_<N>.pt`` and ``last.pt`` (rank 0; other ranks return None)."""
        if not self.dist.is_main:
            return None
        path = self.checkpoints.save(self.state_dict(), self.num_updates)
        if self._best_pending and self.best_update == self.num_updates:
            self.checkpoints.mark_best(None, self.num_updates)
        self._best_pending = False
        self._call("on_checkpoint", path)
        return path

    def _resume_or_restore(self) -> tuple[int | None, LoadReport | None, dict[str, Any]]:
        """Load ``last.pt`` (full resume) or ``config.restore`` (with resets)."""
        fresh: dict[str, Any] = {"epoch": 0, "sampler_state": None, "consumed": 0}
        if self.config.resume and self.checkpoints.last.is_file():
            state = load_checkpoint(self.checkpoints.last)
            self._load(state, None)
            return self.num_updates, None, self._data_state(state) or fresh
        if self.config.restore is not None:
            state = load_checkpoint(self.config.restore.path)
            report = self._load(state, self.config.restore)
            data = fresh if self.config.restore.reset_data else (self._data_state(state) or fresh)
            return None, report, data
        return None, None, fresh

    @staticmethod
    def _data_state(state: Mapping[str, Any]) -> dict[str, Any] | None:
        data = state.get("data")
        if not data:
            return None
        return {"epoch": int(data.get("epoch", 0)), "sampler_state": data.get("sampler"),
                "consumed": int(data.get("consumed", 0))}

    def _load(self, state: Mapping[str, Any], restore: RestoreConfig | None) -> LoadReport:
        path = state.get("path", "checkpoint")
        strict = restore is None or restore.strict
        report = load_partial(self.model, state["model"]).merge(
            load_partial(self.objective, state.get("objective") or {}, prefix="objective."))
        if strict and not report.complete:
            raise CheckpointError(
                f"{path} does not fit this model and objective: {report.describe()}.",
                hint="Was it written by a different recipe? To load only what fits, use "
                     "`trainer.restore` with `strict: false`.")
        reset_optimizer = restore is not None and restore.reset_optimizer
        if not reset_optimizer:
            if not report.complete:
                raise CheckpointError(
                    f"{path} only partly fits the model ({report.describe()}), so its optimizer "
                    f"state cannot be restored.",
                    key="trainer.restore.reset_optimizer", hint="Set `reset_optimizer: true`.")
            saved = state.get("optimizers") or {}
            if set(saved) != set(self.optimizers):
                raise CheckpointError(
                    f"{path} has optimizers for groups {sorted(saved)}, this objective trains "
                    f"{sorted(self.optimizers)}.", key="trainer.restore.reset_optimizer",
                    hint="Set `reset_optimizer: true`.")
            for g, opt in self.optimizers.items():
                settings = [{k: v for k, v in pg.items() if k != "params"}
                            for pg in opt.param_groups]
                try:
                    opt.load_state_dict(saved[g])
                except (ValueError, KeyError) as exc:
                    raise CheckpointError(
                        f"the optimizer state in {path} does not fit ({exc}).",
                        key="trainer.restore.reset_optimizer",
                        hint="Set `reset_optimizer: true`.") from None
                for pg, own in zip(opt.param_groups, settings):
                    pg.update(own)  # this run's lr, decay and betas; the checkpoint's moments
            self.precision.load_state_dict(state.get("scaler") or {})
            trainer = state.get("trainer") or {}
            self.num_updates = int(trainer.get("num_updates", 0))
            self.schedule_offset = int(trainer.get("schedule_offset", 0))
            if restore is not None and restore.reset_lr_schedule:
                self.schedule_offset = self.num_updates
        if restore is None or not restore.reset_meters:
            trainer = state.get("trainer") or {}
            self.best_value = trainer.get("best_value")
            self.best_update = trainer.get("best_update")
            self.bad_validations = int(trainer.get("bad_validations", 0))
            self.health.load_state_dict(trainer.get("health") or {})
            if restore is not None and self.health.divergence is not None:
                self.health.divergence.reset()  # another run's (maybe another objective's) level
        if restore is None and state.get("rng"):
            restore_rng_state(state["rng"])
        return report
