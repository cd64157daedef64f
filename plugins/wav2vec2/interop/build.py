"""Build a w2v :class:`~w2v.model.SpeechModel` from an architecture read off a checkpoint,
then load mapped tensors into it (strictly, with shapes checked)."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from w2v.errors import UserError
from w2v.interfaces import waveform_signal
from w2v.model import SpeechModel

from ..feature_encoder import Wav2Vec2FeatureEncoder, Wav2Vec2FeatureEncoderConfig
from ..transformer import TransformerAggregator, TransformerAggregatorConfig
from .keymap import LoadReport, MappedState, weight_norm_from_weight

_POS_WEIGHT = "aggregator.positional.conv.weight"
_POS_G = "aggregator.positional.conv.parametrizations.weight.original0"
_POS_V = "aggregator.positional.conv.parametrizations.weight.original1"


@attrs.define(kw_only=True)
class Wav2Vec2Spec:
    """A wav2vec 2.0 architecture as a checkpoint describes it.

    Attributes:
        encoder / aggregator: component configs.
        normalize: per-utterance waveform normalisation (fairseq ``task.normalize``).
        dropout_input / dropout_features: SpeechModel dropouts.
        projection: keep a ``Linear`` projection even when the widths match
            (Hugging Face always has one); fairseq omits it then.
        quantizer: :class:`GumbelQuantizerConfig` fields, or None (no quantizer).
        masker: :class:`SpanMaskerConfig` fields, or None (no mask embedding).
        head_vocab: CTC output size, or None; ``head_dropout``, ``head_blank_*``: its settings.
        sample_rate: audio rate.
    """

    encoder: Wav2Vec2FeatureEncoderConfig
    aggregator: TransformerAggregatorConfig
    normalize: bool = False
    dropout_input: float = 0.0
    dropout_features: float = 0.0
    projection: bool = False
    quantizer: dict[str, Any] | None = None
    masker: dict[str, Any] | None = None
    head_vocab: int | None = None
    head_dropout: float = 0.0
    head_blank_weight: float = 0.0
    head_blank_mode: str = "add"
    sample_rate: int = 16000


def config_error(source: str, key: str, value: Any, supported: str) -> UserError:
    return UserError(f"{source}: `{key}` is {value!r}, which w2v does not support; "
                     f"supported: {supported}.")


def build_model(spec: Wav2Vec2Spec) -> SpeechModel:
    """A randomly initialised SpeechModel of ``spec``'s architecture."""
    wave = waveform_signal(spec.sample_rate)
    encoder = Wav2Vec2FeatureEncoder.from_config(spec.encoder, wave)
    local = encoder.produces()
    aggregator = TransformerAggregator.from_config(spec.aggregator, local)
    dim = spec.aggregator.embed_dim
    quantizer = masker = head = None
    if spec.quantizer is not None:
        from w2v.plugins.quantizers.gumbel import GumbelQuantizer, GumbelQuantizerConfig

        quantizer = GumbelQuantizer.from_config(GumbelQuantizerConfig(**spec.quantizer), local)
    if spec.masker is not None:
        from ..masking import SpanMasker, SpanMaskerConfig

        masker = SpanMasker(dim, SpanMaskerConfig(**spec.masker))
    if spec.head_vocab is not None:
        from w2v.plugins.ctc.head import CTCHead

        head = CTCHead(dim, spec.head_vocab, dropout=spec.head_dropout,
                       blank_weight=spec.head_blank_weight, blank_mode=spec.head_blank_mode)
    model = SpeechModel(encoder, aggregator, quantizer=quantizer, masker=masker, head=head,
                        quantize="targets" if quantizer is not None else "none",
                        normalize=spec.normalize, dropout_input=spec.dropout_input,
                        dropout_features=spec.dropout_features, sample_rate=spec.sample_rate)
    if spec.projection and isinstance(model.projection, nn.Identity):
        model.projection = nn.Linear(local.dim, dim)
    return model


def load_mapped(model: nn.Module, mapped: MappedState, report: LoadReport, *,
                allow_missing: bool = False) -> None:
    """Copy ``mapped`` into ``model``: every tensor must land on a parameter or buffer of the
    same shape. Model keys left unset are listed in ``report.missing`` and, unless
    ``allow_missing``, are an error (a config/tensor mismatch must not leave random weights)."""
    tensors, origin = mapped.tensors, mapped.origin
    if _POS_WEIGHT in tensors:                      # weight norm removed: decompose again
        src = origin.pop(_POS_WEIGHT)
        tensors[_POS_G], tensors[_POS_V] = weight_norm_from_weight(tensors.pop(_POS_WEIGHT))
        origin[_POS_G] = origin[_POS_V] = src
    own = model.state_dict()
    for key, value in tensors.items():
        if key not in own:
            raise UserError(f"{report.source}: `{origin[key]}` has no place in the model built "
                            f"from the checkpoint's config (it would be `{key}`); the config and "
                            f"the tensors disagree.")
        if tuple(own[key].shape) != tuple(value.shape):
            raise UserError(f"{report.source}: `{origin[key]}` has shape {list(value.shape)}, but "
                            f"the config implies {list(own[key].shape)} for `{key}`.")
    with torch.no_grad():
        for key, value in tensors.items():
            own[key].copy_(value.to(own[key].dtype))
    report.loaded.extend(dict.fromkeys(k for v in origin.values() for k in v.split(" + ")))
    report.missing.extend(k for k in own if k not in tensors
                          and not k.endswith("num_batches_tracked"))
    if report.missing and not allow_missing:
        shown = ", ".join(f"`{k}`" for k in report.missing[:6])
        more = f" and {len(report.missing) - 6} more" if len(report.missing) > 6 else ""
        raise UserError(f"{report.source}: the checkpoint lacks {len(report.missing)} tensors its "
                        f"config implies ({shown}{more}); refusing to leave them random.")


def finish(model: SpeechModel, report: LoadReport) -> SpeechModel:
    """Eval mode, and the report attached as ``model.load_report``."""
    model.eval()
    model.load_report = report
    return model
