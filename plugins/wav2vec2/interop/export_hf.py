"""Export a w2v wav2vec 2.0 model as a Hugging Face model directory.

Writes ``config.json``, ``preprocessor_config.json`` and ``model.safetensors``
(keys prefixed ``wav2vec2.`` as on the Hub, weight norm as ``weight_g`` /
``weight_v``). The architecture is ``Wav2Vec2ForCTC`` when the model has a CTC
head, ``Wav2Vec2ForPreTraining`` when it has a Gumbel quantizer, else
``Wav2Vec2Model``. Parts Hugging Face's Wav2Vec2 cannot express (causal
attention, Conformer blocks, stacked positional convs, a deep quantizer
projection, ``target_glu``) stop the export with a UserError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from w2v.errors import UserError
from w2v.model import SpeechModel

from ..feature_encoder import Wav2Vec2FeatureEncoder
from ..transformer import TransformerAggregator
from .keymap import KeyMap, LoadReport, split_attention
from .safetensors_io import write_safetensors

#: w2v key -> Hugging Face key (``wav2vec2.`` prefix added where the base model holds it).
EXPORT_RULES: list[tuple[str, str]] = [
    (r"encoder\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"wav2vec2.feature_extractor.conv_layers.\1.conv.\2"),
    (r"encoder\.conv_layers\.(\d+)\.norm\.(weight|bias)", r"wav2vec2.feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"wav2vec2.feature_projection.layer_norm.\1"),
    (r"projection\.(weight|bias)", r"wav2vec2.feature_projection.projection.\1"),
    (r"masker\.mask_emb", "wav2vec2.masked_spec_embed"),
    (r"aggregator\.positional\.conv\.bias", "wav2vec2.encoder.pos_conv_embed.conv.bias"),
    (r"aggregator\.positional\.conv\.parametrizations\.weight\.original0",
     "wav2vec2.encoder.pos_conv_embed.conv.weight_g"),
    (r"aggregator\.positional\.conv\.parametrizations\.weight\.original1",
     "wav2vec2.encoder.pos_conv_embed.conv.weight_v"),
    (r"aggregator\.layer_norm\.(weight|bias)", r"wav2vec2.encoder.layer_norm.\1"),
    (r"aggregator\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)",
     r"wav2vec2.encoder.layers.\1.attention.\2_proj.\3"),
    (r"aggregator\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)",
     r"wav2vec2.encoder.layers.\1.layer_norm.\2"),
    (r"aggregator\.layers\.(\d+)\.fc1\.(weight|bias)",
     r"wav2vec2.encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"aggregator\.layers\.(\d+)\.fc2\.(weight|bias)",
     r"wav2vec2.encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"aggregator\.layers\.(\d+)\.final_layer_norm\.(weight|bias)",
     r"wav2vec2.encoder.layers.\1.final_layer_norm.\2"),
    (r"quantizer\.codevectors", "quantizer.codevectors"),
    (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"head\.proj\.(weight|bias)", r"lm_head.\1"),
]

OBJECTIVE_RULES: list[tuple[str, str]] = [
    (r"project_q\.(weight|bias)", r"project_q.\1"),
    (r"final_proj\.(weight|bias)", r"project_hid.\1"),
    (r"target_glu\..*", "error:`target_glu` (Hugging Face has no target GLU)"),
]


def _check_exportable(model: SpeechModel) -> None:
    enc, agg = model.encoder, model.aggregator
    if not isinstance(enc, Wav2Vec2FeatureEncoder) or not isinstance(agg, TransformerAggregator):
        raise UserError("only wav2vec 2.0 models (the wav2vec2_conv encoder and the transformer "
                        "aggregator) can be exported to Hugging Face.")
    c = agg.config
    problems = [what for bad, what in [
        (c.causal, "causal attention"), (c.layer_type != "transformer", "Conformer blocks"),
        (c.pos_conv_depth != 1, f"pos_conv_depth {c.pos_conv_depth} (only 1)"),
        (enc.layer_norm.eps != c.layer_norm_eps, "different LayerNorm epsilons"),
        (model.quantize_where == "input", "quantized inputs"),
        (model.quantizer is not None and model.head is None
         and not isinstance(getattr(model.quantizer, "weight_proj_hidden", None), nn.Identity),
         "a deep quantizer projection"),
        (model.quantizer is not None and getattr(model.quantizer, "combine_groups", False),
         "a codebook shared across groups"),
    ] if bad]
    if problems:
        raise UserError(f"Hugging Face's Wav2Vec2 cannot express {', '.join(problems)}; the model "
                        f"cannot be exported.")


def hf_config(model: SpeechModel, objective_state: Mapping[str, Tensor]) -> dict[str, Any]:
    enc, agg = model.encoder, model.aggregator
    c = agg.config
    masker = model.masker
    mask_prob = float(masker.config.mask_prob) if masker is not None else 0.0
    cfg: dict[str, Any] = {
        "model_type": "wav2vec2",
        "architectures": ["Wav2Vec2ForCTC" if model.head is not None else
                          "Wav2Vec2ForPreTraining" if model.quantizer is not None else
                          "Wav2Vec2Model"],
        "conv_dim": [d for d, _, _ in enc.conv_config],
        "conv_kernel": [k for _, k, _ in enc.conv_config],
        "conv_stride": [s for _, _, s in enc.conv_config],
        "num_feat_extract_layers": len(enc.conv_config),
        "conv_bias": enc.conv_layers[0].conv.bias is not None,
        "feat_extract_norm": "group" if enc.mode == "group_norm" else "layer",
        "feat_extract_activation": "gelu", "hidden_act": "gelu",
        "hidden_size": c.embed_dim, "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads, "intermediate_size": c.ffn_dim,
        "do_stable_layer_norm": c.layer_norm_first,
        "num_conv_pos_embeddings": c.conv_pos, "num_conv_pos_embedding_groups": c.conv_pos_groups,
        "hidden_dropout": c.dropout, "attention_dropout": c.attention_dropout,
        "activation_dropout": c.activation_dropout, "layerdrop": c.layerdrop,
        "layer_norm_eps": c.layer_norm_eps,
        "feat_proj_dropout": model.dropout_input.p,
        "feat_quantizer_dropout": model.dropout_features.p,
        "apply_spec_augment": masker is not None and mask_prob > 0,
        "mask_time_prob": mask_prob,
        "mask_time_length": int(masker.config.mask_length) if masker is not None else 10,
        "mask_time_min_masks": int(masker.config.min_masks) if masker is not None else 2,
        "mask_feature_prob": 0.0,
        "add_adapter": False,
    }
    if model.quantizer is not None:
        q = model.quantizer
        cfg.update(num_codevector_groups=q.groups, num_codevectors_per_group=q.num_vars,
                   codevector_dim=q.dim)
        proj = objective_state.get("final_proj.weight")
        cfg["proj_codevector_dim"] = int(proj.shape[0]) if proj is not None else q.dim
    if model.head is not None:
        cfg.update(vocab_size=model.head.proj.out_features,
                   pad_token_id=int(getattr(model.head, "blank", 0)),
                   final_dropout=float(model.head.dropout.p) if hasattr(model.head, "dropout")
                   else 0.0, ctc_loss_reduction="sum")
    return cfg


def to_hf(model: SpeechModel, directory: str | Path, *,
          objective_state: Mapping[str, Tensor] | None = None) -> LoadReport:
    """Write ``model`` as a Hugging Face directory (see the module docstring).

    Args:
        model: a wav2vec 2.0 :class:`~w2v.model.SpeechModel`.
        directory: created if needed.
        objective_state: ``project_q.*`` / ``final_proj.*`` of the masked contrastive
            objective (e.g. ``objective.state_dict()`` or an import's
            ``load_report.objective_state``), written as HF's ``project_q`` / ``project_hid``.

    Returns:
        A :class:`~.keymap.LoadReport` of what was written (``loaded``: w2v keys) and dropped.
    """
    _check_exportable(model)
    objective_state = dict(objective_state or {})
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = LoadReport(source=f"Hugging Face export {out_dir}")
    state = {k: v for k, v in model.state_dict().items()}
    if isinstance(model.projection, nn.Identity):                  # HF always has a projection
        dim = model.aggregator.input_dim
        state["projection.weight"] = torch.eye(dim)
        state["projection.bias"] = torch.zeros(dim)
    state = split_attention(state)
    rules: list[tuple[str, str]] = list(EXPORT_RULES)
    if model.head is not None and model.quantizer is not None:
        rules.insert(0, (r"quantizer\..*", "drop:quantizer (Wav2Vec2ForCTC has none)"))
    masker = model.masker
    if masker is not None and float(masker.config.mask_prob) <= 0:
        rules.insert(0, (r"masker\.mask_emb", "drop:mask embedding of a masker with mask_prob 0"))
    if model.head is not None:
        rules.append((r"head\..*", "drop:CTC head state without a place in Hugging Face"))
    mapped = KeyMap(rules, source="w2v model").apply(state, report)
    tensors = dict(mapped.tensors)                                 # keyed by HF names
    if model.quantizer is not None and model.head is None:
        obj = KeyMap(OBJECTIVE_RULES, source="objective state").apply(objective_state, report)
        tensors.update(obj.tensors)
        if not obj.tensors:
            report.notes.append("No objective state given: Hugging Face initialises project_q "
                                "and project_hid randomly.")
    report.loaded = list(mapped.origin.values())
    write_safetensors(tensors, out_dir / "model.safetensors")
    (out_dir / "config.json").write_text(json.dumps(hf_config(model, objective_state), indent=2))
    enc = model.encoder
    (out_dir / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "sampling_rate": model.sample_rate, "padding_value": 0.0, "padding_side": "right",
        "do_normalize": bool(model.normalize),
        "return_attention_mask": enc.mode == "layer_norm"}, indent=2))
    if getattr(enc, "group_norm_padding", "include") == "exclude":
        report.notes.append("group_norm_padding `exclude` has no Hugging Face equivalent: padded "
                            "batches will differ there.")
    return report
