"""``init:``: start a stage's model from an earlier stage or a checkpoint, component by component."""

from __future__ import annotations

import logging
from pathlib import Path

import attrs
import torch
from torch import nn

from w2v.config import field
from w2v.errors import ConfigError, did_you_mean

log = logging.getLogger("w2v")

#: Model slots a hand-over can copy; `aggregator` brings the input projection with it.
SLOTS = ("encoder", "quantizer", "aggregator", "masker", "head")
_PREFIXES = {"aggregator": ("aggregator.", "projection."), "encoder": ("encoder.",),
             "quantizer": ("quantizer.",), "masker": ("masker.",), "head": ("head.",)}


@attrs.define(kw_only=True)
class InitConfig:
    """Where a stage's initial weights come from."""

    from_: str = field(help="an earlier stage id of this recipe, or a path to a w2v run/model "
                            "file, a fairseq .pt or a Hugging Face directory")
    components: list[str] = field(["encoder", "aggregator", "masker"],
                                  "model slots to copy (encoder, quantizer, aggregator, masker, "
                                  "head); the others start fresh")

    def __attrs_post_init__(self) -> None:
        for name in self.components:
            if name not in SLOTS:
                raise ConfigError(f"unknown model slot `{name}`.", key="components",
                                  hint=did_you_mean(name, list(SLOTS), "slots"))


@attrs.frozen
class HandoverReport:
    loaded: list[str]
    new: list[str]
    dropped: list[str]

    def summary(self) -> str:
        return (f"{len(self.loaded)} tensors loaded, {len(self.new)} new (trained from scratch), "
                f"{len(self.dropped)} in the source but not used")


def resolve_source(init: InitConfig, context) -> Path:
    if init.from_ in context.plans:
        return context.output_of(init.from_)
    path = Path(init.from_).expanduser()
    if not path.exists():
        raise ConfigError(f"`{init.from_}` is neither a stage of this recipe nor an existing path.",
                          key=f"stages.{context.stage_id}.init.from",
                          hint=did_you_mean(init.from_, list(context.plans), "stage ids"))
    return path


def copy_components(target: nn.Module, source: nn.Module, components: list[str]) -> HandoverReport:
    """Copy the chosen slots' tensors from ``source`` into ``target`` (shapes must agree)."""
    wanted = tuple(p for c in components for p in _PREFIXES[c])
    src = source.state_dict()
    dst = target.state_dict()
    loaded, mismatched = [], []
    update = {}
    for key, value in src.items():
        if not key.startswith(wanted) or key not in dst:
            continue
        if dst[key].shape != value.shape:
            mismatched.append(f"{key}: source {tuple(value.shape)} vs model {tuple(dst[key].shape)}")
            continue
        update[key] = value
        loaded.append(key)
    if mismatched:
        raise ConfigError("the initial weights do not fit this stage's model: "
                          + "; ".join(mismatched[:4]) + ("; ..." if len(mismatched) > 4 else "."),
                          key="init", hint="The stage's `model:` section must describe the same "
                                           "architecture as the source for the copied slots.")
    missing_slots = [c for c in components if not any(k.startswith(_PREFIXES[c]) for k in loaded)
                     and any(k.startswith(_PREFIXES[c]) for k in dst)]
    if missing_slots:
        raise ConfigError(f"the source has no weights for {', '.join(missing_slots)}.", key="init",
                          hint="Remove those slots from `init.components`.")
    with torch.no_grad():
        target.load_state_dict({**dst, **update})
    new = [k for k in dst if k not in update]
    dropped = [k for k in src if k not in update]
    return HandoverReport(loaded=loaded, new=new, dropped=dropped)


def initialise(model: nn.Module, init: InitConfig | None, context) -> HandoverReport | None:
    """Apply ``init:`` to ``model``; logs and returns the partial-load report."""
    if init is None:
        return None
    from w2v import load_pretrained

    source = load_pretrained(resolve_source(init, context))
    report = copy_components(model, source, list(init.components))
    log.info("init from `%s` (%s): %s", init.from_, ", ".join(init.components), report.summary())
    return report
