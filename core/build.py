"""From structured recipe sections to built components, with fit checks.

:func:`structure_sections` turns a stage's raw sections into :class:`Sections`;
:func:`build_model` builds each component from its config plus the upstream
component's :class:`~w2v.interfaces.Signal`; :func:`build_objective` checks the
objective against the model. Every mismatch is a :class:`~w2v.errors.FitError`
naming both components, raised before any training starts.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
from torch import nn

from .config import ComponentSpec, component, field, real
from .config.source import SourceMap
from .config.structure import structure
from .errors import FitError, UserError
from .hidden_states import hidden_state_names
from .interfaces import Signal, waveform_signal
from .model import SpeechModel


@attrs.define(kw_only=True)
class ModelConfig:
    """The recipe's ``model:`` section: which component fills each slot, and how they are wired."""

    encoder: ComponentSpec | None = component("encoder", help="waveform -> local features")
    quantizer: ComponentSpec | None = component("quantizer", help="local features -> discrete codes")
    aggregator: ComponentSpec | None = component("aggregator", help="context network")
    masker: ComponentSpec | None = component("masker", help="time/channel masking with a learned "
                                             "mask embedding (pretraining and fine-tuning)")
    head: ComponentSpec | None = component("head", help="output layer on the context (CTC); its "
                                           "size comes from the label dictionary")
    quantize: Literal["targets", "input", "both", "none"] = field(
        "targets", "where the quantizer is wired: `targets` (wav2vec 2.0), `input` (vq-wav2vec: "
        "quantized features feed the aggregator), `both`, or `none`")
    normalize: bool = field(False, "zero-mean unit-variance waveform normalisation per utterance "
                            "(wav2vec 2.0 LARGE); stored with the model")
    dropout_input: float = real(0.0, 0.0, 1.0, "dropout after the feature projection")
    dropout_features: float = real(0.0, 0.0, 1.0, "dropout on the unmasked features used as targets")


def _data_config_cls():
    from .data.config import DataConfig
    return DataConfig


def _trainer_config_cls():
    from .train.config import TrainerConfig
    return TrainerConfig


@attrs.define(kw_only=True)
class Sections:
    """One stage's structured sections."""

    data: Any
    model: ModelConfig
    objective: ComponentSpec | None
    decoder: ComponentSpec | None
    trainer: Any


def structure_sections(raw: dict[str, Any], srcmap: SourceMap, prefix: tuple[str, ...] = ()
                       ) -> Sections:
    """Structure the five sections strictly (errors carry file, line and key path).

    A ``fairseq_compat`` key in ``raw`` (the recipe's, or the stage's own) fills that field
    of every component config that has one and does not set it (:func:`inherited_values`).
    """
    from .config.structure import structure_component

    inherited = inherited_values(raw, srcmap, prefix)

    def sub(name: str, cls: Any) -> Any:
        return structure(raw.get(name) or {}, cls, srcmap=srcmap, path=prefix + (name,),
                         inherited=inherited)

    def comp(name: str) -> ComponentSpec | None:
        value = raw.get(name)
        if value is None:
            return None
        return structure_component(name, value, srcmap=srcmap, path=prefix + (name,),
                                   inherited=inherited)

    from .data.sources import structure_data

    data = structure_data(raw.get("data"), srcmap, prefix + ("data",))
    return Sections(data=data, model=sub("model", ModelConfig),
                    objective=comp("objective"), decoder=comp("decoder"),
                    trainer=sub("trainer", _trainer_config_cls()))


def inherited_values(raw: dict[str, Any], srcmap: SourceMap, prefix: tuple[str, ...] = ()
                     ) -> dict[str, Any]:
    """The recipe-wide values in ``raw`` (``{"fairseq_compat": True}``), type-checked."""
    from .config.recipe import INHERITED
    from .errors import ConfigError

    out = {}
    for key in INHERITED:
        if key not in raw or raw[key] is None:
            continue
        if not isinstance(raw[key], bool):
            raise ConfigError(f"expected true or false, found {raw[key]!r}.",
                              where=srcmap.where(prefix + (key,)), key=".".join(prefix + (key,)),
                              hint="`fairseq_compat: true` turns on every fairseq quirk w2v "
                                   "reproduces (docs/fidelity.md).")
        out[key] = raw[key]
    return out


# ------------------------------------------------------------------ building
def _build(spec: ComponentSpec, upstream: Signal | None, **context: Any):
    return spec.build(upstream, **context)


def build_model(cfg: ModelConfig, sample_rate: int = 16000, *, dictionary=None) -> SpeechModel:
    """Build a :class:`SpeechModel` slot by slot, each from its upstream's signal.

    ``dictionary`` (a :class:`w2v.data.dictionary.Dictionary`) sizes the head.
    """
    if cfg.encoder is None:
        raise FitError("the model has no encoder.", key="model.encoder",
                       hint="Add `model: {encoder: {name: ...}}` (see `w2vrun list encoder`).")
    encoder = _build(cfg.encoder, waveform_signal(sample_rate))
    local = encoder.produces()
    quantizer = None
    if cfg.quantizer is not None:
        quantizer = _build(cfg.quantizer, local)
        q = quantizer.produces()
        if cfg.quantize in ("input", "both") and q.dim != local.dim and cfg.aggregator is None:
            raise FitError(f"quantizer `{cfg.quantizer.name}` produces width {q.dim} but encoder "
                           f"`{cfg.encoder.name}` produces {local.dim}: with `model.quantize: "
                           f"{cfg.quantize}` the code vectors replace the encoder's features, and "
                           "without an aggregator nothing projects them to its width.",
                           key="model.quantizer",
                           hint=f"Set the quantizer's `dim: {local.dim}`, add an aggregator, or "
                                "set `model.quantize: targets`.")
    elif cfg.quantize in ("input", "both"):
        raise FitError(f"`model.quantize: {cfg.quantize}` needs a quantizer, but `model.quantizer` "
                       f"is not set.", key="model.quantize",
                       hint="Add a quantizer or set `model.quantize: none`.")
    upstream = quantizer.produces() if quantizer is not None and cfg.quantize in ("input", "both") \
        else local
    aggregator = _build(cfg.aggregator, upstream) if cfg.aggregator is not None else None
    masker = None
    if cfg.masker is not None:
        width = aggregator.input_dim if aggregator is not None else upstream.dim
        masker = _build(cfg.masker, attrs.evolve(upstream, dim=width))
    context = aggregator.produces() if aggregator is not None else upstream
    head = None
    if cfg.head is not None:
        if dictionary is None:
            raise FitError(f"head `{cfg.head.name}` needs a label dictionary to size its output, "
                           "but this stage has none.", key="model.head",
                           hint="Set `data.labels` (and `data.dictionary`), or remove `model.head`.")
        head = _build(cfg.head, context, dictionary=dictionary,
                      hidden_states=len(hidden_state_names(aggregator, context.dim)))
    return SpeechModel(encoder, aggregator, quantizer=quantizer, masker=masker, head=head,
                       quantize=cfg.quantize, normalize=cfg.normalize,
                       dropout_input=cfg.dropout_input, dropout_features=cfg.dropout_features,
                       sample_rate=sample_rate)


def build_objective(spec: ComponentSpec, model: SpeechModel, **context: Any) -> nn.Module:
    """Build the objective for ``model`` and check that they fit."""
    objective = spec.build(model.context_signal(), model=model, **context)
    try:
        objective.check_model(model)
    except UserError as exc:
        raise exc.located(where=spec.where, key=spec.key) from None
    return objective


def count_parameters(module: nn.Module | None) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters())


def describe_model(model: SpeechModel, cfg: ModelConfig) -> list[str]:
    """Lines for ``--dry-run``: each component, its parameters and what it produces."""
    lines = []
    for slot in ("encoder", "quantizer", "aggregator", "masker", "head"):
        part = getattr(model, slot, None)
        spec = getattr(cfg, slot)
        if part is None or spec is None:
            continue
        produces = part.produces().describe() if hasattr(part, "produces") else ""
        lines.append(f"  {slot:<11}{spec.name:<26}{count_parameters(part):>13,} params  {produces}")
    proj = count_parameters(model.projection)
    if proj:
        lines.append(f"  {'projection':<11}{'linear':<26}{proj:>13,} params")
    local = model.local_signal()
    for slot in ("encoder", "quantizer", "aggregator", "masker", "head"):
        describe = getattr(getattr(model, slot, None), "describe_lines", None)
        if callable(describe):                    # a component's own lines (a span length)
            lines += [f"  {line}" for line in describe(local)]
    return lines


def on_meta():
    """Build on the meta device: LARGE models cost nothing in ``--dry-run``."""
    return torch.device("meta")
