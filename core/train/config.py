"""The recipe's ``trainer:`` section.

Lengths of schedule phases and freezes accept either an integer number of
updates or a float up to 1.0, read as a fraction of ``max_updates`` (so a
scaled-down demo recipe keeps the same shape).
"""

from __future__ import annotations

import math
from typing import Literal

import attrs

from ..config import check, choice, field, real, size
from ..errors import ConfigError

Device = Literal["auto", "cpu", "cuda", "mps"]
Precision = Literal["fp32", "bf16", "fp16"]
OptimizerName = Literal["adam", "adamw", "sgd"]
ScheduleName = Literal["polynomial", "tri_stage", "cosine", "fixed"]

_MAX_UPDATES = 1 << 32
_LENGTH_HELP = "updates (an integer) or a fraction of max_updates (a float up to 1.0)"


def resolve_length(value: int | float | None, max_updates: int, key: str, *,
                   truncate: bool = False) -> int:
    """A phase length in updates: an int is updates, a float up to 1.0 a fraction of
    ``max_updates``, rounded to the nearest update (``truncate``: ``int(max_updates *
    fraction)``, fairseq's tri_stage phases)."""
    if value is None:
        return 0
    if isinstance(value, bool) or value < 0:
        raise ConfigError(f"must be a non-negative number of updates or a fraction up to 1.0, "
                          f"found {value}.", key=key)
    if isinstance(value, float) and value <= 1.0:
        return int(max_updates * value) if truncate else int(round(value * max_updates))
    if isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"a float length must be a fraction up to 1.0 (of max_updates) or a "
                          f"whole number of updates, found {value}.", key=key,
                          hint=f"Write `{int(value)}` updates or a fraction like "
                               f"`{min(value / max_updates, 0.99):.2f}`.")
    return int(value)


def _length_field(default, help: str):
    def check_length(instance, attribute, value):
        if value is not None:
            resolve_length(value, 1, attribute.name)
    return field(default, f"{help}; {_LENGTH_HELP}", validator=check_length)


@attrs.define(kw_only=True)
class ScheduleConfig:
    """The learning-rate schedule (``trainer.schedule``); the factor multiplies every group's lr."""

    name: ScheduleName = choice(
        "polynomial", "`polynomial`: linear warmup to lr (update 0 at lr 0), then polynomial "
                      "decay to end_lr at max_updates (fairseq polynomial_decay); `tri_stage`: "
                      "warmup / hold / exponential decay, fractional phases truncated (fairseq "
                      "tri_stage); `cosine`: warmup then cosine to "
                      "min_lr_scale x lr; `fixed`: warmup then constant")
    warmup: int | float | None = _length_field(
        None, "warmup length (default: 0.08 of training for polynomial/cosine, 0.1 for "
              "tri_stage, 0 for fixed)")
    hold: int | float | None = _length_field(
        None, "tri_stage: updates at the peak lr (default 0.4 of training)")
    decay: int | float | None = _length_field(
        None, "tri_stage: updates of exponential decay (default 0.5 of training)")
    end_lr: float = real(0.0, 0.0, 10.0, "polynomial: lr reached at max_updates")
    power: float = real(1.0, 0.0, 10.0, "polynomial: decay exponent (1 = linear)")
    init_lr_scale: float = real(0.01, 0.0, 1.0, "tri_stage: lr at update 0, as a fraction of lr")
    final_lr_scale: float = real(0.05, 0.0, 1.0, "tri_stage: lr after the decay phase, as a "
                                                 "fraction of lr")
    min_lr_scale: float = real(0.0, 0.0, 1.0, "cosine: lr at max_updates, as a fraction of lr")


@attrs.define(kw_only=True)
class ParamGroupConfig:
    """Overrides for the parameters under one model component (``trainer.param_groups.encoder``)."""

    lr_scale: float = real(1.0, 0.0, 1000.0, "multiplies the scheduled lr for these parameters")
    weight_decay: float | None = real(None, 0.0, 10.0,
                                      "weight decay for these parameters (null: trainer's)")


@attrs.define(kw_only=True)
class GroupOptimizerConfig:
    """Composite training: one optimizer per group named by the objective (``generator``)."""

    optimizer: OptimizerName | None = choice(None, "optimizer of this group (null: trainer's)")
    lr: float | None = real(None, 0.0, 10.0, "peak lr of this group (null: trainer's)")
    betas: tuple[float, float] | None = field(None, "Adam betas of this group (null: trainer's)")
    eps: float | None = real(None, 0.0, 1.0, "Adam epsilon of this group (null: trainer's)")
    weight_decay: float | None = real(None, 0.0, 10.0, "weight decay of this group "
                                                       "(null: trainer's)")


@attrs.define(kw_only=True)
class RestoreConfig:
    """Continue from another run's checkpoint (used only when this run has no ``last.pt``)."""

    path: str = field(help="a w2v trainer checkpoint (`.../checkpoints/last.pt`) or its run "
                           "directory")
    reset_optimizer: bool = field(False, "do not load optimizer and loss-scaler state; the update "
                                         "count starts at 0")
    reset_lr_schedule: bool = field(False, "start the lr schedule again from this point")
    reset_meters: bool = field(False, "forget the best metric, early-stopping and health counters")
    reset_data: bool = field(False, "start the data from epoch 0 instead of where it stopped")
    strict: bool = field(False, "fail unless every model and objective parameter matches; "
                                "otherwise load what fits and report loaded / new / dropped names")


@attrs.define(kw_only=True)
class TrainerConfig:
    """How a stage trains: device, precision, optimisation, schedule, checkpoints, logging."""

    device: Device = choice("auto", "`auto` picks cuda, then mps, then cpu")
    precision: Precision = choice(
        "fp32", "`fp32`, `bf16` (autocast; preferred on recent GPUs and CPUs) or `fp16` "
                "(autocast with dynamic loss scaling)")
    max_updates: int = size(400_000, 1, _MAX_UPDATES, "optimizer updates to train for")
    update_freq: int = size(1, 1, 4096, "micro-batches accumulated per update (per device)")
    batch_seconds: float | None = real(
        None, 0.0, 1e7, "audio seconds per update over all devices; when set, update_freq = "
                        "ceil(batch_seconds / (max_tokens / sample_rate x world_size))")
    clip_norm: float = real(0.0, 0.0, 1e6, "clip the global gradient norm to this (0: off)")
    optimizer: OptimizerName = choice(
        "adam", "`adam`: fairseq's Adam: eps added to sqrt(v) before the bias correction "
                "(its effective eps is eps / sqrt(1 - beta2^t), 7x torch's at update 1 with "
                "beta2 0.98) and decoupled weight decay on all parameters; `adamw`: torch's "
                "AdamW, without decay on biases and norm weights (1-d parameters); `sgd`: "
                "with `momentum`")
    lr: float = real(5e-4, 0.0, 10.0, "peak learning rate")
    betas: tuple[float, float] = field((0.9, 0.98), "Adam betas")
    eps: float = real(1e-6, 0.0, 1.0, "Adam epsilon")
    weight_decay: float = real(0.0, 0.0, 10.0, "decoupled weight decay")
    momentum: float = real(0.0, 0.0, 1.0, "SGD momentum")
    param_groups: dict[str, ParamGroupConfig] = field(
        {}, "overrides by model component name prefix, e.g. `{encoder: {lr_scale: 0.1}}`; the "
            "longest matching prefix wins; objective parameters are under `objective`")
    group_optimizers: dict[str, GroupOptimizerConfig] = field(
        {}, "composite training (GANs): optimizer settings per group the objective names")
    schedule: ScheduleConfig = field(factory=ScheduleConfig, help="learning-rate schedule")
    freeze: list[str] = field([], "components frozen for the whole run (`[encoder]`)")
    freeze_updates: dict[str, int | float] = field(
        {}, f"components frozen for the first N updates (`{{aggregator: 10000}}`, like fairseq's "
            f"freeze_finetune_updates); N in {_LENGTH_HELP}")
    seed: int = size(1, 0, (1 << 31) - 1, "seed; every update reseeds from (seed, update, rank) "
                                          "so dropout and masks repeat exactly on resume")
    log_interval: int = size(100, 1, _MAX_UPDATES, "updates between metrics.jsonl lines")
    valid_interval: int = size(0, 0, _MAX_UPDATES, "updates between validations (0: only at "
                                                   "the end)")
    save_interval: int = size(1000, 0, _MAX_UPDATES, "updates between checkpoints (0: only at "
                                                     "the end)")
    keep_last: int = size(2, 1, 10_000, "periodic checkpoints kept (plus last.pt and best.pt)")
    best_metric: str = field("loss", "validation stat that selects best.pt and drives early "
                                     "stopping")
    maximize: bool | None = field(None, "whether a larger best_metric is better (null: from the "
                                        "objective, e.g. accuracy yes, loss and wer no)")
    early_stop_patience: int = size(0, 0, 1 << 20, "stop after this many validations without "
                                                   "improvement (0: never)")
    max_nonfinite: int = size(10, 1, 1 << 20, "stop when this many updates in a row have a "
                                              "non-finite loss or gradient")
    divergence_window: int = size(
        50, 0, 1 << 24, "stop (exit 1) when the loss or gradient norm stays above "
                        "divergence_factor x its running average for this many updates; warn "
                        "after a tenth of them (0: off)")
    divergence_factor: float = real(10.0, 1.0, 1e12, "how far above its running average a loss "
                                                     "or gradient norm counts as diverging")
    collapse_window: int = size(200, 0, 1 << 24, "warn when code_perplexity stays collapsed "
                                                 "(<= 1.1 x groups, or < 5% of the codebook) or "
                                                 "the contrastive loss stays at chance for this "
                                                 "many updates (0: off)")
    compile: bool = field(False, "torch.compile the encoder's and context network's blocks "
                                 "(regional: one graph shared by identical blocks; parts "
                                 "without blocks whole), dynamic shapes; the first update "
                                 "pays the compile time; falls back to eager with a warning "
                                 "where unsupported; meant for GPUs: on CPU the eager paths "
                                 "were faster (docs/benchmarks.md)")
    activation_checkpointing: bool = field(
        False, "recompute activations in backward instead of keeping them: each "
               "context-network block's and each conv feature encoder block's; about one "
               "more forward of those parts for much less memory")
    num_threads: int = size(0, 0, 1024, "torch CPU threads per process (0: OMP_NUM_THREADS "
                                        "when set, else cpu count / local world size)")
    find_unused_parameters: bool | None = field(
        None, "DDP find_unused_parameters (null: on when LayerDrop, freezing or composite "
              "training needs it)")
    resume: bool = field(True, "continue from the run's checkpoints/last.pt when it exists")
    restore: RestoreConfig | None = field(None, "start from another run's checkpoint, with "
                                                "optional resets")

    def __attrs_post_init__(self) -> None:
        check(0.0 <= self.betas[0] < 1.0 and 0.0 <= self.betas[1] < 1.0, "betas",
              f"each beta must be in [0, 1), found {list(self.betas)}.")
        overlap = sorted(set(self.freeze) & set(self.freeze_updates))
        check(not overlap, "freeze_updates",
              f"{', '.join(f'`{c}`' for c in overlap)} is both frozen throughout (`freeze`) and "
              f"for some updates (`freeze_updates`).", hint="Keep it in one of the two.")
        for name, n in self.freeze_updates.items():
            resolve_length(n, self.max_updates, f"freeze_updates.{name}")
        check(self.batch_seconds is None or self.update_freq == 1, "batch_seconds",
              f"is set together with update_freq ({self.update_freq}); batch_seconds derives "
              f"update_freq.", hint="Remove one of the two.")

    def resolve_update_freq(self, max_tokens: int | None, sample_rate: int | None,
                            world_size: int = 1) -> int:
        """Micro-batches per update: ``update_freq``, or derived from ``batch_seconds``.

        ``ceil(batch_seconds / (max_tokens / sample_rate * world_size))``: the smallest
        accumulation that reaches the requested audio per update.
        """
        if self.batch_seconds is None:
            return self.update_freq
        if not max_tokens or not sample_rate:
            raise ConfigError("needs the data's max_tokens and sample_rate to derive update_freq.",
                              key="batch_seconds", hint="Set `update_freq` instead.")
        per_update = max_tokens / sample_rate * max(world_size, 1)
        return max(1, math.ceil(self.batch_seconds / per_update - 1e-9))
