"""Import Hugging Face ``Wav2Vec2Model`` / ``Wav2Vec2ForPreTraining`` / ``Wav2Vec2ForCTC``
(and their ``Wav2Vec2Conformer*`` counterparts, see :mod:`.conformer`).

Reads ``config.json`` (and ``preprocessor_config.json`` for ``do_normalize``
and the sampling rate) and ``model.safetensors`` / ``pytorch_model.bin``
(sharded ones too) directly: transformers is not needed at run time. Every
source key is mapped or the import stops (see :mod:`.keymap`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from w2v.errors import UserError
from w2v.model import SpeechModel
from w2v.plugins.interop.hf_files import read_hf_directory
from w2v.plugins.interop.keymap import KeyMap, LoadReport
from w2v.plugins.interop.loading import finish
from w2v.plugins.interop.malformed import reading

from ..feature_encoder import Wav2Vec2FeatureEncoderConfig
from ..transformer import TransformerAggregatorConfig
from .build import Wav2Vec2Spec, build_model, config_error, fuse_attention, load_mapped
from .conformer import HF_ENCODER_RULES, hf_conformer_aggregator

#: ``model_type`` values of the Hugging Face configs this module reads.
MODEL_TYPES = ("wav2vec2", "wav2vec2-conformer")

POS_G = "aggregator.positional.conv.parametrizations.weight.original0"
POS_V = "aggregator.positional.conv.parametrizations.weight.original1"

#: Hugging Face key (``wav2vec2.`` prefix removed) -> w2v key.
HF_RULES: list[tuple[str, str]] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"encoder.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.conv_layers.\1.norm.\2"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"projection.\1"),
    (r"masked_spec_embed", "masker.mask_emb"),
    (r"encoder\.pos_conv_embed\.conv\.bias", "aggregator.positional.conv.bias"),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_g|parametrizations\.weight\.original0)", POS_G),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_v|parametrizations\.weight\.original1)", POS_V),
    (r"encoder\.pos_conv_embed\.conv\.weight", "aggregator.positional.conv.weight"),
    (r"encoder\.layer_norm\.(weight|bias)", r"aggregator.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)",
     r"aggregator.layers.\1.self_attn.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"aggregator.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)", r"aggregator.layers.\1.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"aggregator.layers.\1.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"aggregator.layers.\1.final_layer_norm.\2"),
    (r"quantizer\.codevectors", "quantizer.codevectors"),
    (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"project_q\.(weight|bias)", r"objective:project_q.\1"),
    (r"project_hid\.(weight|bias)", r"objective:final_proj.\1"),
    (r"lm_head\.(weight|bias)", r"head.proj.\1"),
    (r"encoder\.layers\.\d+\.adapter_layer\..*", "error:attention adapters (`adapter_attn_dim`)"),
    (r"adapter\..*", "error:the output adapter (`add_adapter`)"),
    (r"(?:projector|classifier|layer_weights|tdnn|feature_extractor_xvector|objective)(?:\..*)?",
     "error:sequence classification / x-vector heads (only CTC heads are supported)"),
]


def spec_from_hf_config(config: Mapping[str, Any], keys: set[str],
                        preprocessor: Mapping[str, Any] | None = None, *,
                        source: str = "Hugging Face") -> tuple[Wav2Vec2Spec, dict[str, Any]]:
    """The w2v architecture (and objective config) a HF ``Wav2Vec2Config`` describes."""
    c = dict(config)
    pre = dict(preprocessor or {})
    model_type = c.get("model_type", "wav2vec2")
    if model_type not in MODEL_TYPES:
        raise config_error(source, "model_type", model_type, "`wav2vec2`, `wav2vec2-conformer`")
    conformer = model_type == "wav2vec2-conformer"
    activations = ("feat_extract_activation",) if conformer else ("feat_extract_activation",
                                                                   "hidden_act")
    for key in activations:                        # a Conformer's hidden_act: see .conformer
        if c.get(key, "gelu") != "gelu":
            raise config_error(source, key, c[key], "`gelu`")
    if c.get("add_adapter") or c.get("adapter_attn_dim"):
        raise UserError(f"{source}: adapters (`add_adapter`, `adapter_attn_dim`) are not supported.")
    norm = c.get("feat_extract_norm", "group")
    if norm not in ("group", "layer"):
        raise config_error(source, "feat_extract_norm", norm, "`group`, `layer`")
    dims = c.get("conv_dim", [512] * 7)
    kernels = c.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])
    strides = c.get("conv_stride", [5, 2, 2, 2, 2, 2, 2])
    if not len(dims) == len(kernels) == len(strides):
        raise UserError(f"{source}: conv_dim, conv_kernel and conv_stride differ in length.")
    eps = float(c.get("layer_norm_eps", 1e-5))
    encoder = Wav2Vec2FeatureEncoderConfig(
        conv_layers=[(int(d), int(k), int(s)) for d, k, s in zip(dims, kernels, strides)],
        mode="group_norm" if norm == "group" else "layer_norm",
        conv_bias=bool(c.get("conv_bias", False)), layer_norm_eps=eps)
    aggregator = TransformerAggregatorConfig(
        embed_dim=int(c.get("hidden_size", 768)), layers=int(c.get("num_hidden_layers", 12)),
        ffn_dim=int(c.get("intermediate_size", 3072)), heads=int(c.get("num_attention_heads", 12)),
        layer_norm_first=bool(c.get("do_stable_layer_norm", False)),
        dropout=float(c.get("hidden_dropout", 0.1)),
        attention_dropout=float(c.get("attention_dropout", 0.1)),
        activation_dropout=float(c.get("activation_dropout", 0.1)),
        layerdrop=float(c.get("layerdrop", 0.1)),
        conv_pos=int(c.get("num_conv_pos_embeddings", 128)),
        conv_pos_groups=int(c.get("num_conv_pos_embedding_groups", 16)), layer_norm_eps=eps)
    if conformer:
        aggregator = hf_conformer_aggregator(c, source)
    quantizer = None
    if "quantizer.codevectors" in keys:
        quantizer = {"groups": int(c.get("num_codevector_groups", 2)),
                     "num_vars": int(c.get("num_codevectors_per_group", 320)),
                     "dim": int(c.get("codevector_dim", 256))}
    masker = None
    if "masked_spec_embed" in keys:
        masker = {"mask_prob": float(c.get("mask_time_prob", 0.05)),
                  "mask_length": int(c.get("mask_time_length", 10)),
                  "min_masks": int(c.get("mask_time_min_masks", 2)),
                  "mask_channel_prob": float(c.get("mask_feature_prob", 0.0)),
                  "mask_channel_length": int(c.get("mask_feature_length", 10))}
    head_vocab = None
    if "lm_head.weight" in keys:
        head_vocab = int(c.get("vocab_size", 32))
    spec = Wav2Vec2Spec(
        encoder=encoder, aggregator=aggregator,
        normalize=bool(pre.get("do_normalize", False)),
        dropout_input=float(c.get("feat_proj_dropout", 0.0)),
        dropout_features=float(c.get("feat_quantizer_dropout", 0.0)), projection=True,
        quantizer=quantizer, masker=masker, head_vocab=head_vocab,
        head_dropout=float(c.get("final_dropout", 0.1)),
        sample_rate=int(pre.get("sampling_rate", 16000)))
    objective = {"final_dim": int(c.get("proj_codevector_dim", 256)),
                 "logit_temp": float(c.get("contrastive_logits_temperature", 0.1)),
                 "num_negatives": int(c.get("num_negatives", 100)),
                 "loss_weights": [float(c.get("diversity_loss_weight", 0.1)), 0.0]}
    return spec, objective


def from_hf(source: str | Path | tuple[Any, Mapping[str, Tensor]], *,
            preprocessor: Mapping[str, Any] | None = None) -> SpeechModel:
    """A w2v model from a Hugging Face wav2vec 2.0 checkpoint, in eval mode.

    Args:
        source: a model directory (``config.json`` + weights), or ``(config, state_dict)``
            where ``config`` is a ``Wav2Vec2Config`` or its dict and ``state_dict`` a model's
            ``state_dict()`` (any of ``Wav2Vec2Model``, ``...ForPreTraining``, ``...ForCTC``).
        preprocessor: ``preprocessor_config.json`` contents, for the tuple form.

    Returns:
        The :class:`~w2v.model.SpeechModel`; ``model.load_report`` is the
        :class:`~.keymap.LoadReport` (its ``objective_state`` holds ``project_q`` and
        ``project_hid`` as ``final_proj`` for the masked contrastive objective).
    """
    if isinstance(source, tuple):
        config, state = source
        config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        name, pre = "Hugging Face checkpoint", dict(preprocessor or {})
    else:
        config, state, pre = read_hf_directory(source)
        name = f"Hugging Face checkpoint {source}"
    conformer = config.get("model_type") == "wav2vec2-conformer"
    prefix = "wav2vec2_conformer." if conformer else "wav2vec2."
    keys = {k[len(prefix):] if k.startswith(prefix) else k for k in state}
    spec, objective = spec_from_hf_config(config, keys, pre, source=name)
    report = LoadReport(source=name, objective_config=objective)
    if not pre:
        report.notes.append("No preprocessor config: assumed no waveform normalisation, 16 kHz.")
    model = build_model(spec)
    if spec.head_vocab is not None:
        model.head.blank = int(config.get("pad_token_id", 0) or 0)
    rules = HF_ENCODER_RULES + HF_RULES if conformer else HF_RULES
    if conformer:
        report.notes.append("Conformer blocks see padded frames as in Hugging Face "
                            "(aggregator fairseq_compat).")
    keymap = KeyMap(rules, source=name, strip=(prefix,))
    mapped = fuse_attention(keymap.apply(state, report), name)
    load_mapped(model, mapped, report)
    return finish(model, report)


def detect_hf(path: Any) -> bool:
    """True for a directory holding a wav2vec2 (or wav2vec2-conformer) ``config.json``."""
    config = Path(str(path)) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") in MODEL_TYPES
    except (OSError, ValueError):
        return False


def load_hf(path: Any, dictionary: Any = None, **kwargs: Any) -> SpeechModel:
    """Importer entry for :func:`w2v.load_pretrained` (``dictionary`` is not needed: HF CTC
    vocabularies live in the directory's ``vocab.json``); a malformed directory raises a
    one-line DataError."""
    with reading(path, "Hugging Face wav2vec 2.0 directory"):
        return from_hf(path)
