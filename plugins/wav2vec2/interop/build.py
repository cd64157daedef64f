"""Build a w2v :class:`~w2v.model.SpeechModel` from a wav2vec 2.0 architecture read off a
checkpoint, then load mapped tensors into it (strictly, with shapes checked); w2v's fused
attention layout (``self_attn.qkv``) against the usual ``{q,k,v}_proj``."""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs
import torch
from torch import Tensor, nn

from w2v.errors import UserError
from w2v.interfaces import waveform_signal
from w2v.model import SpeechModel
from w2v.plugins.interop.keymap import LoadReport, MappedState
from w2v.plugins.interop.loading import load_mapped as load_tensors

from ..feature_encoder import Wav2Vec2FeatureEncoder, Wav2Vec2FeatureEncoderConfig
from ..transformer import TransformerAggregator, TransformerAggregatorConfig

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

        masker = SpanMasker(SpanMaskerConfig(**spec.masker), dim)
    if spec.head_vocab is not None:
        from w2v.plugins.ctc.head import CTCHead

        head = CTCHead(CTCHead.Config(dropout=spec.head_dropout, blank_weight=spec.head_blank_weight,
                                      blank_mode=spec.head_blank_mode), dim, spec.head_vocab)
    model = SpeechModel(encoder, aggregator, quantizer=quantizer, masker=masker, head=head,
                        quantize="targets" if quantizer is not None else "none",
                        normalize=spec.normalize, dropout_input=spec.dropout_input,
                        dropout_features=spec.dropout_features, sample_rate=spec.sample_rate)
    if spec.projection and isinstance(model.projection, nn.Identity):
        model.projection = nn.Linear(local.dim, dim)
    return model


def load_mapped(model: nn.Module, mapped: MappedState, report: LoadReport, *,
                allow_missing: bool = False) -> None:
    """:func:`w2v.plugins.interop.loading.load_mapped` after putting a positional conv weight
    whose weight norm was removed (fairseq exports, torchaudio) back into ``(g, v)``."""
    tensors, origin = mapped.tensors, mapped.origin
    if _POS_WEIGHT in tensors:
        src = origin.pop(_POS_WEIGHT)
        tensors[_POS_G], tensors[_POS_V] = weight_norm_from_weight(tensors.pop(_POS_WEIGHT))
        origin[_POS_G] = origin[_POS_V] = src
    load_tensors(model, mapped, report, allow_missing=allow_missing)


# ------------------------------------------------------------------ w2v's attention layout
_QKV = re.compile(r"(.*\.self_attn)\.(q|k|v)_proj\.(weight|bias)")
_FUSED = re.compile(r"(.*\.self_attn)\.qkv\.(weight|bias)")


def fuse_attention(mapped: MappedState, source: str) -> MappedState:
    """Join ``*.self_attn.{q,k,v}_proj.{weight,bias}`` into ``*.self_attn.qkv.*`` (q, k, v order)."""
    groups: dict[tuple[str, str], dict[str, str]] = {}
    for key in mapped.tensors:
        m = _QKV.fullmatch(key)
        if m:
            groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = key
    for (prefix, kind), parts in groups.items():
        if set(parts) != {"q", "k", "v"}:
            absent = sorted({"q", "k", "v"} - set(parts))
            origin = mapped.origin[next(iter(parts.values()))]
            raise UserError(f"{source}: the attention block of `{origin}` lacks its "
                            f"{', '.join(a + '_proj' for a in absent)} {kind}.")
        keys = [parts[p] for p in "qkv"]
        fused = torch.cat([mapped.tensors.pop(k) for k in keys], dim=0)
        mapped.tensors[f"{prefix}.qkv.{kind}"] = fused
        mapped.origin[f"{prefix}.qkv.{kind}"] = " + ".join(mapped.origin.pop(k) for k in keys)
    return mapped


def split_attention(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`fuse_attention` on a w2v state dict."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = _FUSED.fullmatch(key)
        if not m:
            out[key] = value
            continue
        for name, part in zip("qkv", value.chunk(3, dim=0)):
            out[f"{m.group(1)}.{name}_proj.{m.group(2)}"] = part.contiguous()
    return out


def weight_norm_from_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(g, v)`` of weight normalisation over dim 2 for a plain conv ``weight`` ``[O, I, K]``."""
    g = weight.norm(dim=(0, 1), keepdim=True)
    return g, weight
