"""Parameter groups and optimizers (one, or one per group in composite training).

Each torch param group carries ``peak_lr`` (the group's lr times its
``lr_scale``); the trainer sets ``lr = peak_lr * schedule(step)`` every update.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from ..errors import ConfigError, did_you_mean
from .adam import FairseqAdam, has_fused_kernel
from .config import GroupOptimizerConfig, ParamGroupConfig, TrainerConfig

NamedParams = list[tuple[str, nn.Parameter]]


def named_trainable(model: nn.Module, objective: nn.Module) -> NamedParams:
    """Model parameters by their names, then objective parameters under ``objective.``."""
    out = list(model.named_parameters())
    out += [(f"objective.{n}", p) for n, p in objective.named_parameters()]
    return out


def _component_names(named: NamedParams) -> list[str]:
    return sorted({n.split(".")[0] for n, _ in named})


def _override_for(name: str, overrides: Mapping[str, ParamGroupConfig]) -> str | None:
    best = None
    for prefix in overrides:
        if (name == prefix or name.startswith(prefix + ".")) and \
                (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def check_prefixes(named: NamedParams, prefixes: Iterable[str], key: str) -> None:
    """Every prefix must name at least one parameter (``encoder``, ``aggregator.layers.0``)."""
    names = [n for n, _ in named]
    for prefix in prefixes:
        if not any(n == prefix or n.startswith(prefix + ".") for n in names):
            raise ConfigError(f"`{prefix}` matches no parameter of the model or objective.",
                              key=f"{key}.{prefix}",
                              hint=did_you_mean(prefix, _component_names(named), "components"))


def param_groups(named: NamedParams, config: TrainerConfig, lr: float, weight_decay: float,
                 decay_1d: bool) -> list[dict]:
    """torch param groups: one per override prefix (and, for adamw, per decay / no decay).

    Args:
        named: ``(name, parameter)`` pairs to optimise.
        config: the trainer config (``param_groups`` overrides).
        lr: the peak lr of these parameters before ``lr_scale``.
        weight_decay: the default decay.
        decay_1d: False for ``adamw``: biases and norm weights get no decay.
    """
    check_prefixes(named, config.param_groups, "param_groups")
    groups: dict[tuple[str | None, bool], dict] = {}
    for name, p in named:
        prefix = _override_for(name, config.param_groups)
        override = config.param_groups.get(prefix) if prefix is not None else None
        no_decay = not decay_1d and p.ndim <= 1
        key = (prefix, no_decay)
        if key not in groups:
            scale = override.lr_scale if override is not None else 1.0
            wd = override.weight_decay if override is not None and \
                override.weight_decay is not None else weight_decay
            groups[key] = {"params": [], "names": [], "peak_lr": lr * scale, "lr": lr * scale,
                           "weight_decay": 0.0 if no_decay else wd,
                           "group": prefix or "default"}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def make_optimizer(kind: str, groups: list[dict], *, betas: tuple[float, float], eps: float,
                   momentum: float) -> torch.optim.Optimizer:
    """``adam`` -> :class:`~w2v.train.adam.FairseqAdam` (fairseq's rule); ``adamw`` -> torch
    AdamW, on its fused kernel where every parameter has one; ``sgd`` -> SGD with momentum.
    Weight decay comes from each group."""
    for g in groups:
        g.pop("names", None)
    if kind == "adam":
        return FairseqAdam(groups, lr=groups[0]["lr"] if groups else 0.0, betas=betas, eps=eps)
    if kind == "adamw":
        fused = all(has_fused_kernel(p.device, p.dtype) for g in groups for p in g["params"])
        return torch.optim.AdamW(groups, lr=groups[0]["lr"] if groups else 0.0, betas=betas,
                                 eps=eps, fused=fused or None)
    return torch.optim.SGD(groups, lr=groups[0]["lr"] if groups else 0.0, momentum=momentum)


def build_optimizers(model: nn.Module, objective: nn.Module, config: TrainerConfig,
                     composite: Mapping[str, Iterable[nn.Parameter]] | None
                     ) -> dict[str, torch.optim.Optimizer]:
    """One optimizer (key ``default``), or one per composite group with its own settings."""
    named = named_trainable(model, objective)
    if composite is None:
        if config.group_optimizers:
            name = next(iter(config.group_optimizers))
            raise ConfigError("is set, but the objective does not train in groups.",
                              key=f"group_optimizers.{name}",
                              hint="Remove `group_optimizers` (it is for composite objectives "
                                   "such as the wav2vec-U GAN).")
        groups = param_groups(named, config, config.lr, config.weight_decay,
                              decay_1d=config.optimizer != "adamw")
        return {"default": make_optimizer(config.optimizer, groups, betas=config.betas,
                                          eps=config.eps, momentum=config.momentum)}
    check_prefixes(named, config.param_groups, "param_groups")
    by_id = {id(p): n for n, p in named}
    unknown = sorted(set(config.group_optimizers) - set(composite))
    if unknown:
        raise ConfigError("names a group the objective does not have.",
                          key=f"group_optimizers.{unknown[0]}",
                          hint=did_you_mean(unknown[0], list(composite), "groups"))
    optimizers = {}
    for group, params in composite.items():
        oc = config.group_optimizers.get(group) or GroupOptimizerConfig()
        kind = oc.optimizer or config.optimizer
        sub = [(by_id.get(id(p), f"{group}.?"), p) for p in params]
        groups = param_groups(sub, _only_matching(config, sub), oc.lr if oc.lr is not None
                              else config.lr, oc.weight_decay if oc.weight_decay is not None
                              else config.weight_decay, decay_1d=kind != "adamw")
        optimizers[group] = make_optimizer(kind, groups, betas=oc.betas or config.betas,
                                           eps=oc.eps if oc.eps is not None else config.eps,
                                           momentum=config.momentum)
    return optimizers


def _only_matching(config: TrainerConfig, named: NamedParams) -> TrainerConfig:
    """``config`` with only the ``param_groups`` overrides that touch ``named``."""
    import attrs

    names = [n for n, _ in named]
    keep = {k: v for k, v in config.param_groups.items()
            if any(n == k or n.startswith(k + ".") for n in names)}
    return attrs.evolve(config, param_groups=keep)
