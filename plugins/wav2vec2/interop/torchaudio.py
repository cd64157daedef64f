"""Import torchaudio ``Wav2Vec2Model`` (``torchaudio.models.wav2vec2_model`` and its bundles).

torchaudio's state dict says nothing about strides, heads or dropouts, so
the architecture comes from ``config_kwargs`` (the keyword arguments of
``torchaudio.models.wav2vec2_model``; missing ones take ``wav2vec2_base``'s
values) or, given the module itself, from its submodules.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn

from w2v.errors import UserError
from w2v.model import SpeechModel
from w2v.plugins.interop.keymap import KeyMap, LoadReport
from w2v.plugins.interop.loading import finish

from ..feature_encoder import DEFAULT_CONV_LAYERS, Wav2Vec2FeatureEncoderConfig
from ..transformer import TransformerAggregatorConfig
from .build import Wav2Vec2Spec, build_model, config_error, fuse_attention, load_mapped

POS_G = "aggregator.positional.conv.parametrizations.weight.original0"
POS_V = "aggregator.positional.conv.parametrizations.weight.original1"

TORCHAUDIO_RULES: list[tuple[str, str]] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"encoder.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.conv_layers.\1.norm.\2"),
    (r"encoder\.feature_projection\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.feature_projection\.projection\.(weight|bias)", r"projection.\1"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.bias", "aggregator.positional.conv.bias"),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.(?:weight_g|parametrizations\.weight\.original0)", POS_G),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.(?:weight_v|parametrizations\.weight\.original1)", POS_V),
    (r"encoder\.transformer\.pos_conv_embed\.conv\.weight", "aggregator.positional.conv.weight"),
    (r"encoder\.transformer\.layer_norm\.(weight|bias)", r"aggregator.layer_norm.\1"),
    (r"encoder\.transformer\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)",
     r"aggregator.layers.\1.self_attn.\2_proj.\3"),
    (r"encoder\.transformer\.layers\.(\d+)\.layer_norm\.(weight|bias)",
     r"aggregator.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)",
     r"aggregator.layers.\1.fc1.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)",
     r"aggregator.layers.\1.fc2.\2"),
    (r"encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.(weight|bias)",
     r"aggregator.layers.\1.final_layer_norm.\2"),
    (r"encoder\.transformer\.layers\.\d+\.attention\.(?:rel_attn_embed|gru_rel_pos).*",
     "error:WavLM relative-position attention"),
    (r"aux\.(weight|bias)", r"head.proj.\1"),
]

#: ``torchaudio.models.wav2vec2_base`` arguments.
BASE_KWARGS: dict[str, Any] = {
    "extractor_mode": "group_norm", "extractor_conv_layer_config": None,
    "extractor_conv_bias": False, "encoder_embed_dim": 768, "encoder_projection_dropout": 0.1,
    "encoder_pos_conv_kernel": 128, "encoder_pos_conv_groups": 16, "encoder_num_layers": 12,
    "encoder_num_heads": 12, "encoder_attention_dropout": 0.1, "encoder_ff_interm_features": 3072,
    "encoder_ff_interm_dropout": 0.1, "encoder_dropout": 0.1, "encoder_layer_norm_first": False,
    "encoder_layer_drop": 0.1, "aux_num_out": None,
}


def kwargs_from_module(model: nn.Module) -> dict[str, Any]:
    """``wav2vec2_model`` keyword arguments recovered from a torchaudio ``Wav2Vec2Model``."""
    convs = model.feature_extractor.conv_layers
    first_norm = convs[0].layer_norm
    mode = "group_norm" if isinstance(first_norm, nn.GroupNorm) else "layer_norm"
    transformer = model.encoder.transformer
    layer0 = transformer.layers[0] if len(transformer.layers) else None
    pos = transformer.pos_conv_embed
    return {
        "extractor_mode": mode,
        "extractor_conv_layer_config": [(b.conv.out_channels, b.kernel_size, b.stride)
                                        for b in convs],
        "extractor_conv_bias": convs[0].conv.bias is not None,
        "encoder_embed_dim": pos.embed_dim,
        "encoder_projection_dropout": model.encoder.feature_projection.dropout.p,
        "encoder_pos_conv_kernel": pos.kernel_size,
        "encoder_pos_conv_groups": pos.conv.groups,
        "encoder_num_layers": len(transformer.layers),
        "encoder_num_heads": layer0.attention.num_heads if layer0 is not None else 12,
        "encoder_attention_dropout": layer0.attention.dropout if layer0 is not None else 0.0,
        "encoder_ff_interm_features": layer0.feed_forward.intermediate_dense.out_features
        if layer0 is not None else 3072,
        "encoder_ff_interm_dropout": layer0.feed_forward.intermediate_dropout.p
        if layer0 is not None else 0.0,
        "encoder_dropout": transformer.dropout.p,
        "encoder_layer_norm_first": not transformer.layer_norm_first,
        "encoder_layer_drop": transformer.layer_drop,
        "aux_num_out": model.aux.out_features if model.aux is not None else None,
    }


def spec_from_torchaudio_kwargs(kwargs: Mapping[str, Any], *, source: str) -> Wav2Vec2Spec:
    unknown = set(kwargs) - set(BASE_KWARGS)
    if unknown:
        raise UserError(f"{source}: unknown wav2vec2_model arguments {sorted(unknown)}.",
                        hint=f"Valid: {', '.join(sorted(BASE_KWARGS))}.")
    k = {**BASE_KWARGS, **kwargs}
    if k["extractor_mode"] not in ("group_norm", "layer_norm"):
        raise config_error(source, "extractor_mode", k["extractor_mode"], "group_norm, layer_norm")
    conv = k["extractor_conv_layer_config"] or DEFAULT_CONV_LAYERS
    encoder = Wav2Vec2FeatureEncoderConfig(
        conv_layers=[tuple(int(v) for v in block) for block in conv], mode=k["extractor_mode"],
        conv_bias=bool(k["extractor_conv_bias"]))
    dim = int(k["encoder_embed_dim"])
    aggregator = TransformerAggregatorConfig(
        embed_dim=dim, layers=int(k["encoder_num_layers"]),
        ffn_dim=int(k["encoder_ff_interm_features"]), heads=int(k["encoder_num_heads"]),
        layer_norm_first=bool(k["encoder_layer_norm_first"]), dropout=float(k["encoder_dropout"]),
        attention_dropout=float(k["encoder_attention_dropout"]),
        activation_dropout=float(k["encoder_ff_interm_dropout"]),
        layerdrop=float(k["encoder_layer_drop"]), conv_pos=int(k["encoder_pos_conv_kernel"]),
        conv_pos_groups=int(k["encoder_pos_conv_groups"]))
    return Wav2Vec2Spec(encoder=encoder, aggregator=aggregator, projection=True,
                        dropout_input=float(k["encoder_projection_dropout"]),
                        head_vocab=None if k["aux_num_out"] is None else int(k["aux_num_out"]))


def from_torchaudio(model_or_state: nn.Module | Mapping[str, Tensor],
                    config_kwargs: Mapping[str, Any] | None = None) -> SpeechModel:
    """A w2v model from a torchaudio ``Wav2Vec2Model`` or its state dict, in eval mode.

    Args:
        model_or_state: the module (its architecture is read off it) or its ``state_dict()``.
        config_kwargs: ``wav2vec2_model`` keyword arguments; needed for a state dict unless it
            is ``wav2vec2_base``-shaped (overrides what the module says, when given one).

    ``model.load_report`` is the :class:`~.keymap.LoadReport`. torchaudio models carry
    no waveform normalisation flag: set ``model.normalize`` for LARGE/LV-60k bundles.
    """
    name = "torchaudio Wav2Vec2Model"
    if isinstance(model_or_state, nn.Module):
        kwargs = {**kwargs_from_module(model_or_state), **(config_kwargs or {})}
        state = model_or_state.state_dict()
    else:
        kwargs, state = dict(config_kwargs or {}), dict(model_or_state)
        if "aux.weight" in state and kwargs.get("aux_num_out") is None:
            kwargs["aux_num_out"] = int(state["aux.weight"].shape[0])
    spec = spec_from_torchaudio_kwargs(kwargs, source=name)
    report = LoadReport(source=name)
    report.notes.append("torchaudio checkpoints carry no normalisation flag; normalize=False.")
    mapped = fuse_attention(KeyMap(TORCHAUDIO_RULES, source=name).apply(state, report), name)
    model = build_model(spec)
    load_mapped(model, mapped, report)
    return finish(model, report)
