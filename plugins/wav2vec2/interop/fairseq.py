"""Import fairseq wav2vec 2.0 checkpoints (pretrained ``wav2vec2``, fine-tuned ``wav2vec_ctc``).

Neither fairseq nor omegaconf is needed: the file is read with the
restricted unpickler of :mod:`w2v.plugins.interop.unpickle`, the config comes from ``cfg`` (a
dict or a pickled ``DictConfig``) or, in older files, ``args`` (an
``argparse.Namespace``). Fine-tuned checkpoints hold the model under
``w2v_encoder.w2v_model.*``, the CTC layer as ``w2v_encoder.proj`` and the
pretraining config under ``cfg.model.w2v_args`` (``args.w2v_args``); they
carry no dictionary.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from w2v.errors import UserError
from w2v.model import SpeechModel
from w2v.plugins.interop.fairseq_files import (parse_conv_layers, pickle_of, pickle_strings,
                                             read_fairseq_checkpoint)
from w2v.plugins.interop.keymap import KeyMap, LoadReport
from w2v.plugins.interop.loading import finish
from w2v.plugins.interop.malformed import reading
from w2v.plugins.interop.unpickle import resolve

from ..feature_encoder import Wav2Vec2FeatureEncoderConfig
from ..transformer import TransformerAggregatorConfig
from .build import Wav2Vec2Spec, build_model, config_error, fuse_attention, load_mapped
from .conformer import check_fairseq_conformer, fairseq_conformer_rules

POS_G = "aggregator.positional.conv.parametrizations.weight.original0"
POS_V = "aggregator.positional.conv.parametrizations.weight.original1"

#: fairseq ``Wav2Vec2Model`` key -> w2v key (``w2v_encoder.w2v_model.`` prefix removed).
FAIRSEQ_RULES: list[tuple[str, Any]] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"encoder.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)", r"encoder.conv_layers.\1.norm.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"encoder.conv_layers.\1.norm.\2"),
    (r"layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"projection.\1"),
    (r"mask_emb", "masker.mask_emb"),
    (r"encoder\.pos_conv\.0\.bias", "aggregator.positional.conv.bias"),
    (r"encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)", POS_G),
    (r"encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)", POS_V),
    (r"encoder\.pos_conv\.0\.weight", "aggregator.positional.conv.weight"),
    (r"encoder\.pos_conv\.(\d+)\.0\.(weight|bias)", r"aggregator.positional.convs.\1.\2"),
    (r"encoder\.pos_conv\.\d+\..*", "error:a batch-normed positional conv (`conv_pos_batch_norm`)"),
    (r"encoder\.layer_norm\.(weight|bias)", r"aggregator.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(?:linear_|pos_bias|rotary).*",
     "error:ESPnet-style attention outside Conformer blocks"),
    (r"encoder\.layers\.(\d+)\.adapter_layer\..*", "error:adapter layers (`layer_type: trf_adp`)"),
    (r"encoder\.layers\.(\d+)\.(.+)", r"aggregator.layers.\1.\2"),
    (r"quantizer\.vars", "quantizer.codevectors"),
    (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"quantizer\.weight_proj\.(\d+)\.0\.(weight|bias)",           # deep projection: blocks
     lambda m: f"quantizer.weight_proj_hidden.{2 * int(m[1])}.{m[2]}"),
    (r"quantizer\.weight_proj\.\d+\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"project_q\.(weight|bias)", r"objective:project_q.\1"),
    (r"final_proj\.(weight|bias)", r"objective:final_proj.\1"),
    (r"target_glu\.0\.(weight|bias)", r"objective:target_glu.0.\1"),
    (r"(?:input_quantizer|project_inp)\..*", "error:quantized inputs (`quantize_input`)"),
    (r"(?:.*\.)?(?:version|_float_tensor)", "drop:fairseq bookkeeping buffer"),
    (r"w2v_encoder\.proj\.(weight|bias)", r"head.proj.\1"),
]

#: ``Wav2Vec2Config`` defaults for fields older checkpoints may lack.
DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default", "encoder_layers": 12, "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12, "activation_fn": "gelu",
    "layer_type": "transformer", "dropout": 0.1, "attention_dropout": 0.1,
    "activation_dropout": 0.0, "encoder_layerdrop": 0.0, "dropout_input": 0.0,
    "dropout_features": 0.0, "final_dim": 0, "layer_norm_first": False,
    "conv_feature_layers": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
    "conv_bias": False, "logit_temp": 0.1, "quantize_targets": False, "quantize_input": False,
    "target_glu": False, "feature_grad_mult": 1.0, "quantizer_depth": 1, "quantizer_factor": 3,
    "latent_vars": 320, "latent_groups": 2, "latent_dim": 0, "latent_temp": (2.0, 0.5, 0.999995),
    "mask_length": 10, "mask_prob": 0.65, "mask_selection": "static", "mask_other": 0.0,
    "no_mask_overlap": False, "mask_min_space": 1, "require_same_masks": True,
    "mask_dropout": 0.0, "mask_channel_length": 10, "mask_channel_prob": 0.0,
    "mask_channel_before": False, "mask_channel_selection": "static", "mask_channel_other": 0.0,
    "no_mask_channel_overlap": False, "mask_channel_min_space": 1, "num_negatives": 100,
    "cross_sample_negatives": 0, "codebook_negatives": 0, "conv_pos": 128,
    "conv_pos_groups": 16, "pos_conv_depth": 1, "required_seq_len_multiple": 2,
    "depthwise_conv_kernel_size": 31, "attn_type": "", "pos_enc_type": "abs",
}

#: fine-tuning fields that override the pretraining config (fairseq ``arg_overrides``).
FINETUNE_OVERRIDES = {"dropout": "dropout", "activation_dropout": "activation_dropout",
                      "attention_dropout": "attention_dropout", "dropout_input": "dropout_input",
                      "layerdrop": "encoder_layerdrop", "feature_grad_mult": "feature_grad_mult",
                      "mask_prob": "mask_prob", "mask_length": "mask_length",
                      "mask_selection": "mask_selection", "mask_other": "mask_other",
                      "no_mask_overlap": "no_mask_overlap",
                      "mask_channel_prob": "mask_channel_prob",
                      "mask_channel_length": "mask_channel_length",
                      "mask_channel_selection": "mask_channel_selection",
                      "mask_channel_other": "mask_channel_other",
                      "no_mask_channel_overlap": "no_mask_channel_overlap",
                      "mask_channel_before": "mask_channel_before"}


def _model_config(cfg: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any],
                                                              dict[str, Any] | None]:
    """``(pretraining model fields, task fields, fine-tuning fields or None)`` with interpolations
    resolved and defaults filled."""
    name = cfg["model"].get("_name")
    if name in ("wav2vec_ctc", "wav2vec2_ctc"):
        finetune = {k: resolve(v, cfg) for k, v in cfg["model"].items()}
        inner = finetune.get("w2v_args")
        if not isinstance(inner, dict) or not isinstance(inner.get("model"), dict):
            raise UserError(f"{source}: the fine-tuned checkpoint does not embed its pretraining "
                            f"config (`w2v_args`), so its architecture is unknown.",
                            hint="Re-save it with fairseq after loading, or import the pretrained "
                                 "checkpoint and fine-tune in w2v.")
        model = {k: resolve(v, inner) for k, v in inner["model"].items()}
        task = {k: resolve(v, inner) for k, v in (inner.get("task") or {}).items()}
        outer_task = {k: resolve(v, cfg) for k, v in (cfg.get("task") or {}).items()}
        task = {**task, **{k: v for k, v in outer_task.items() if v is not None}}
        for ft_key, key in FINETUNE_OVERRIDES.items():
            if finetune.get(ft_key) is not None:
                model[key] = finetune[ft_key]
        name = model.get("_name", "wav2vec2")
    else:
        model = {k: resolve(v, cfg) for k, v in cfg["model"].items()}
        task = {k: resolve(v, cfg) for k, v in (cfg.get("task") or {}).items()}
        finetune = None
    if name not in ("wav2vec2", None):
        raise config_error(source, "model._name", name, "`wav2vec2`, `wav2vec_ctc`")
    model = {**DEFAULTS, **{k: v for k, v in model.items() if v is not None}}
    return model, task, finetune


def spec_from_fairseq_config(cfg: dict[str, Any], keys: set[str], *, head_vocab: int | None = None,
                             source: str = "fairseq") -> tuple[Wav2Vec2Spec, dict[str, Any]]:
    """The w2v architecture (and objective config) of a plain fairseq config; ``keys`` are the
    state-dict keys (prefix removed) that say which optional parts exist; ``head_vocab`` is the
    CTC layer's output size (fine-tuned checkpoints)."""
    m, task, finetune = _model_config(cfg, source)
    if m["activation_fn"] != "gelu":
        raise config_error(source, "activation_fn", m["activation_fn"], "`gelu`")
    if m["layer_type"] not in ("transformer", "conformer"):
        raise config_error(source, "layer_type", m["layer_type"], "`transformer`, `conformer`")
    conformer = m["layer_type"] == "conformer"
    if conformer:
        check_fairseq_conformer(m, source)
    if m["quantize_input"]:
        raise UserError(f"{source}: quantized inputs (`quantize_input`) are not supported.")
    if m["extractor_mode"] not in ("default", "layer_norm"):
        raise config_error(source, "extractor_mode", m["extractor_mode"], "`default`, `layer_norm`")
    conv = parse_conv_layers(m["conv_feature_layers"], source)
    encoder = Wav2Vec2FeatureEncoderConfig(
        conv_layers=conv, mode="group_norm" if m["extractor_mode"] == "default" else "layer_norm",
        conv_bias=bool(m["conv_bias"]), feature_grad_mult=float(m["feature_grad_mult"]))
    dim = int(m["encoder_embed_dim"])
    aggregator = TransformerAggregatorConfig(
        embed_dim=dim, layers=int(m["encoder_layers"]), ffn_dim=int(m["encoder_ffn_embed_dim"]),
        heads=int(m["encoder_attention_heads"]), layer_norm_first=bool(m["layer_norm_first"]),
        dropout=float(m["dropout"]), attention_dropout=float(m["attention_dropout"]),
        activation_dropout=float(m["activation_dropout"]),
        layerdrop=float(m["encoder_layerdrop"]), conv_pos=int(m["conv_pos"]),
        conv_pos_groups=int(m["conv_pos_groups"]), pos_conv_depth=int(m["pos_conv_depth"]),
        layer_type=m["layer_type"], conformer_kernel=int(m["depthwise_conv_kernel_size"]),
        pos_enc_type=m["pos_enc_type"] if conformer else "abs", fairseq_compat=conformer,
        required_seq_len_multiple=int(m["required_seq_len_multiple"]))
    final_dim = int(m["final_dim"]) or dim
    quantizer = None
    if "quantizer.vars" in keys:
        depth = int(m["quantizer_depth"])
        quantizer = {"groups": int(m["latent_groups"]), "num_vars": int(m["latent_vars"]),
                     "dim": int(m["latent_dim"]) or final_dim,
                     "temp": tuple(float(t) for t in m["latent_temp"]),
                     "weight_proj_depth": depth, "weight_proj_factor": int(m["quantizer_factor"])}
    masker = None
    if "mask_emb" in keys:
        masker = {"mask_prob": float(m["mask_prob"]), "mask_length": int(m["mask_length"]),
                  "mask_selection": str(m["mask_selection"]),
                  "mask_other": float(m["mask_other"]),
                  "no_mask_overlap": bool(m["no_mask_overlap"]),
                  "mask_min_space": int(m["mask_min_space"]),
                  "require_same_masks": bool(m["require_same_masks"]),
                  "mask_dropout": float(m["mask_dropout"]),
                  "mask_channel_prob": float(m["mask_channel_prob"]),
                  "mask_channel_length": int(m["mask_channel_length"]),
                  "mask_channel_selection": str(m["mask_channel_selection"]),
                  "mask_channel_other": float(m["mask_channel_other"]),
                  "no_mask_channel_overlap": bool(m["no_mask_channel_overlap"]),
                  "mask_channel_min_space": int(m["mask_channel_min_space"]),
                  "mask_channel_before": bool(m["mask_channel_before"])}
    ft = finetune or {}
    spec = Wav2Vec2Spec(
        encoder=encoder, aggregator=aggregator,
        normalize=bool(task.get("normalize") or m.get("normalize") or False),
        dropout_input=float(m["dropout_input"]), dropout_features=float(m["dropout_features"]),
        projection=conv[-1][0] != dim, quantizer=quantizer, masker=masker,
        head_vocab=head_vocab, head_dropout=float(ft.get("final_dropout") or 0.0),
        head_blank_weight=float(ft.get("blank_weight") or 0.0),
        head_blank_mode=str(ft.get("blank_mode") or "add"),
        sample_rate=int(task.get("sample_rate") or 16000))
    objective = {"final_dim": final_dim, "logit_temp": float(m["logit_temp"]),
                 "num_negatives": int(m["num_negatives"]),
                 "cross_sample_negatives": int(m["cross_sample_negatives"]),
                 "codebook_negatives": int(m["codebook_negatives"]),
                 "target_glu": bool(m["target_glu"])}
    criterion = cfg.get("criterion") if isinstance(cfg.get("criterion"), dict) else {}
    if criterion.get("loss_weights") is not None:
        objective["loss_weights"] = [float(w) for w in criterion["loss_weights"]]
    return spec, objective


def from_fairseq(path: str | Path) -> SpeechModel:
    """A w2v model from a fairseq wav2vec 2.0 checkpoint (``.pt``), in eval mode.

    Pretrained (``wav2vec2``) and CTC fine-tuned (``wav2vec_ctc``) checkpoints,
    with ``cfg`` or legacy ``args``. ``model.load_report`` is the
    :class:`~.keymap.LoadReport` (``project_q`` / ``final_proj`` / ``target_glu`` are in
    its ``objective_state``).
    """
    name = f"fairseq checkpoint {path}"
    state, cfg = read_fairseq_checkpoint(path)
    prefix = "w2v_encoder.w2v_model."
    keys = {k[len(prefix):] if k.startswith(prefix) else k for k in state}
    proj = state.get("w2v_encoder.proj.weight")
    spec, objective = spec_from_fairseq_config(
        cfg, keys, head_vocab=None if proj is None else int(proj.shape[0]), source=name)
    report = LoadReport(source=name, objective_config=objective)
    if spec.head_vocab is not None:
        report.notes.append("Fine-tuned fairseq checkpoints carry no dictionary: supply "
                            "dict.ltr.txt (<s>=0 is the CTC blank).")
    rules = FAIRSEQ_RULES
    if spec.aggregator.layer_type == "conformer":
        rules = fairseq_conformer_rules(spec.aggregator.pos_enc_type) + rules
        report.notes.append("Conformer blocks see padded frames as in fairseq "
                            "(aggregator fairseq_compat).")
    keymap = KeyMap(rules, source=name, strip=(prefix,))
    mapped = fuse_attention(keymap.apply(state, report), name)
    model = build_model(spec)
    load_mapped(model, mapped, report)
    return finish(model, report)


# ------------------------------------------------------------------ detection for load_pretrained

_MARKERS = (b"feature_extractor.conv_layers.0.0.weight", b"encoder.pos_conv.0")


def detect_fairseq(path: Any) -> bool:
    """True for a file that looks like a fairseq wav2vec 2.0 checkpoint (scans the pickle's
    strings without loading tensors when the file is in torch's zip format)."""
    p = Path(str(path))
    if not p.is_file():
        return False
    try:
        if zipfile.is_zipfile(p):
            data = pickle_of(p)
            if data is None:
                return False
            strings = pickle_strings(data)
            has_cfg = b"cfg" in strings or b"args" in strings
            return has_cfg and any(any(m in s for s in strings) for m in _MARKERS)
        head = p.read_bytes()[:1 << 22]
        return all(m in head for m in _MARKERS[:1])
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def load_fairseq(path: Any, dictionary: Any = None, **kwargs: Any) -> SpeechModel:
    """Importer entry for :func:`w2v.load_pretrained` (the dictionary is the caller's business);
    a malformed file raises a one-line DataError."""
    with reading(path, "fairseq wav2vec 2.0 checkpoint"):
        return from_fairseq(path)
