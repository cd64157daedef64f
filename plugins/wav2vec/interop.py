"""Import fairseq wav2vec 1.0 / vq-wav2vec checkpoints (model ``_name`` / ``arch`` ``wav2vec``).

Neither fairseq nor omegaconf is needed: the file is read with the restricted
unpickler of :mod:`w2v.plugins.interop.unpickle`; the config comes from ``cfg.model`` (a
dict or a pickled ``DictConfig``) or, in older files (the released ``wav2vec_large.pt``,
``vq-wav2vec*.pt``), the flat ``args`` Namespace. Every state-dict key is
mapped, dropped on purpose or refused (:class:`~w2v.plugins.interop.keymap.KeyMap`):

==================================================  ===========================================
fairseq                                             w2v
==================================================  ===========================================
``feature_extractor.conv_layers.i.0.weight``        ``encoder.blocks.i.conv.weight``
``feature_extractor.conv_layers.i.2.{weight,bias}`` ``encoder.blocks.i.norm.*`` (GroupNorm(1, C))
``feature_aggregator.conv_layers.i.1.*``            ``aggregator.blocks.i.conv.*``
``feature_aggregator.conv_layers.i.3.*``            ``aggregator.blocks.i.norm.*``
``feature_aggregator.residual_proj.i.weight``       ``aggregator.residual_proj.i.weight``
``feature_aggregator.1.{weight,bias}_{ih,hh}_l0``   ``aggregator.layers.0.*`` (GRU)
``vector_quantizer.vars``                           ``quantizer.codevectors`` (Gumbel)
``vector_quantizer.weight_proj[.i.0|.d].*``         ``quantizer.weight_proj[_hidden.2i].*``
``vector_quantizer.embedding``, ``.projection.*``   ``quantizer.embedding``, ``.projection.*``
``wav2vec_predictions.project_to_steps.weight``     objective ``head.weight`` = ``w[:, :, 0, :]``
                                                    ``.permute(2, 0, 1)`` ``[K, D_ctx, D_z]``
``wav2vec_predictions.project_to_steps.bias``       objective ``head.bias`` ``[D_z]``, shared by
                                                    all steps in both
==================================================  ===========================================

The prediction head is loss-time state: it lands in ``model.load_report.objective_state``
(keys of :class:`~w2v.plugins.wav2vec.objective.FutureContrastiveObjective`), its config
in ``load_report.objective_config``; :func:`objective_from_report` builds that objective.

fairseq's ``aggregator: gru`` feeds ``[B, T, C]`` to a GRU that is not ``batch_first``,
so its recurrence runs over the *batch* axis; an imported GRU aggregator gets
``fairseq_compat: true``, which runs it that way, so outputs equal fairseq's.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from w2v.errors import UserError
from w2v.plugins.interop.fairseq_files import (parse_conv_layers, pickle_of, pickle_strings,
                                             read_fairseq_checkpoint)
from w2v.plugins.interop.keymap import KeyMap, LoadReport, MappedState
from w2v.plugins.interop.unpickle import resolve

ARCH = "wav2vec"

#: fairseq ``Wav2Vec2Config`` defaults (``Wav2VecConfig``) for fields older checkpoints lack.
DEFAULTS: dict[str, Any] = {
    "prediction_steps": 12, "sample_distance": None, "cross_sample_negatives": 0,
    "num_negatives": 10,
    "conv_feature_layers": "[(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2), "
                           "(512, 1, 1), (512, 1, 1), (512, 1, 1)]",
    "conv_aggregator_layers": "[(512, 2, 1), (512, 3, 1), (512, 4, 1), (512, 5, 1), (512, 6, 1), "
                              "(512, 7, 1), (512, 8, 1), (512, 9, 1), (512, 10, 1), (512, 11, 1), "
                              "(512, 12, 1), (512, 13, 1)]",
    "dropout": 0.0, "dropout_features": 0.0, "dropout_agg": 0.0, "aggregator": "cnn",
    "gru_dim": 512, "no_conv_bias": False, "agg_zero_pad": False, "skip_connections_feat": False,
    "skip_connections_agg": True, "residual_scale": 0.5, "log_compression": True,
    "balanced_classes": False, "project_features": "none", "non_affine_group_norm": False,
    "offset": "auto", "activation": "relu", "vq_type": "none", "vq_vars": 320, "vq_groups": 2,
    "vq_dim": 0, "vq_depth": 1, "combine_groups": False, "vq_temp": (2.0, 0.5, 0.999995),
    "vq_gamma": 0.25, "infonce": False,
}

HEAD_W = "wav2vec_predictions.project_to_steps.weight"
HEAD_B = "wav2vec_predictions.project_to_steps.bias"


def _gumbel_weight_proj(m) -> str:
    """``vector_quantizer.weight_proj.{i}...``: hidden block ``i`` (``.0`` Linear) or the last."""
    index, rest = int(m[1]), m[2]
    if rest.startswith("0."):
        return f"quantizer.weight_proj_hidden.{2 * index}.{rest[2:]}"
    return f"quantizer.weight_proj.{rest}"


RULES: list[tuple[str, Any]] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"encoder.blocks.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)", r"encoder.blocks.\1.norm.\2"),
    (r"feature_aggregator\.conv_layers\.(\d+)\.1\.(weight|bias)", r"aggregator.blocks.\1.conv.\2"),
    (r"feature_aggregator\.conv_layers\.(\d+)\.3\.(weight|bias)", r"aggregator.blocks.\1.norm.\2"),
    (r"feature_aggregator\.residual_proj\.(\d+)\.weight", r"aggregator.residual_proj.\1.weight"),
    (r"feature_aggregator\.1\.((?:weight|bias)_(?:ih|hh)_l0)", r"aggregator.layers.0.\1"),
    (r"vector_quantizer\.vars", "quantizer.codevectors"),
    (r"vector_quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"vector_quantizer\.weight_proj\.(\d+)\.((?:0\.)?(?:weight|bias))", _gumbel_weight_proj),
    (r"vector_quantizer\.embedding", "quantizer.embedding"),
    (r"vector_quantizer\.projection\.([01])\.(weight|bias)", r"quantizer.projection.\1.\2"),
    (r"wav2vec_predictions\.project_to_steps\.(weight|bias)", r"objective:project_to_steps.\1"),
    (r"project_features\..*", "error:a target projection network (`project_features: new`)"),
    (r"(?:.*\.)?(?:version|_float_tensor)", "drop:fairseq bookkeeping buffer"),
]


# ------------------------------------------------------------------ config
def read_wav2vec_checkpoint(path: Any) -> tuple[dict[str, Tensor], dict[str, Any], dict]:
    """``(state dict, model fields with defaults, criterion fields)`` of a wav2vec 1.0 file."""
    state, cfg = read_fairseq_checkpoint(path)
    if "criterion" not in cfg:          # legacy `args`: the criterion's fields sit among the model's
        cfg["criterion"] = {k: cfg["model"][k] for k in ("infonce", "loss_weights")
                            if k in cfg["model"]}
    name = cfg["model"].get("_name")
    if name != ARCH:
        raise UserError(f"{path}: the checkpoint's model is `{name}`, not wav2vec 1.0 "
                        f"(`{ARCH}`).", hint="wav2vec 2.0 checkpoints load through "
                                             "`w2v.load_pretrained` as well (format "
                                             "fairseq_wav2vec2).")
    model = {k: resolve(v, cfg) for k, v in cfg["model"].items()}
    model = {**DEFAULTS, **{k: v for k, v in model.items() if v is not None}}
    criterion = cfg.get("criterion") if isinstance(cfg.get("criterion"), dict) else {}
    task = cfg.get("task") if isinstance(cfg.get("task"), dict) else {}
    model["sample_rate"] = int(resolve(task.get("sample_rate"), cfg) or 16000)
    if model.get("infonce") is None or isinstance(model.get("infonce"), str):
        model["infonce"] = bool(criterion.get("infonce", False))
    return state, model, criterion


def _triple(value: Any, source: str) -> tuple[float, float, float]:
    try:
        v = ast.literal_eval(value) if isinstance(value, str) else value
        a, b, c = (float(x) for x in v)
        return a, b, c
    except (ValueError, TypeError, SyntaxError):
        raise UserError(f"{source}: cannot read vq_temp {value!r} as (max, min, decay).") from None


def model_section(m: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The w2v ``model:`` section (plain data) of fairseq wav2vec 1.0 model fields."""
    if m["activation"] not in ("relu", "gelu"):
        raise UserError(f"{source}: activation {m['activation']!r} is not supported (relu, gelu).")
    if m["project_features"] not in ("none", None):
        raise UserError(f"{source}: `project_features: {m['project_features']}` (targets through "
                        "an aggregator) is not supported.")
    affine = not bool(m["non_affine_group_norm"])
    encoder = {"name": "wav2vec_conv",
               "layers": [list(layer) for layer in parse_conv_layers(m["conv_feature_layers"],
                                                                     source)],
               "norm": "group", "affine_norm": affine, "activation": m["activation"],
               "log_compression": bool(m["log_compression"]),
               "skip_connections": bool(m["skip_connections_feat"]),
               "residual_scale": float(m["residual_scale"])}
    if m["aggregator"] == "cnn":
        aggregator = {"name": "wav2vec_conv_aggregator",
                      "layers": [list(x) for x in parse_conv_layers(m["conv_aggregator_layers"],
                                                                    source)],
                      "norm": "group", "affine_norm": affine, "activation": m["activation"],
                      "conv_bias": not bool(m["no_conv_bias"]),
                      "zero_pad": bool(m["agg_zero_pad"]),
                      "skip_connections": bool(m["skip_connections_agg"]),
                      "residual_scale": float(m["residual_scale"]),
                      "dropout": float(m["dropout"])}
    elif m["aggregator"] == "gru":       # fairseq's GRU recurs across the batch axis
        aggregator = {"name": "gru", "dim": int(m["gru_dim"]), "num_layers": 1,
                      "fairseq_compat": True}
    else:
        raise UserError(f"{source}: aggregator {m['aggregator']!r} is not supported (cnn, gru).")
    section: dict[str, Any] = {"encoder": encoder, "aggregator": aggregator, "quantize": "none",
                               "dropout_input": float(m["dropout_features"])}
    embed = encoder["layers"][-1][0]
    vq = m["vq_type"] or "none"
    if vq == "gumbel":
        section["quantizer"] = {
            "name": "gumbel", "groups": int(m["vq_groups"]), "num_vars": int(m["vq_vars"]),
            "dim": int(m["vq_dim"]) or embed, "combine_groups": bool(m["combine_groups"]),
            "temp": list(_triple(m["vq_temp"], source)), "weight_proj_depth": int(m["vq_depth"]),
            "weight_proj_factor": 2, "activation": m["activation"]}
    elif vq == "kmeans":
        if int(m["vq_dim"]) not in (0, embed):
            raise UserError(f"{source}: a k-means quantizer with vq_dim {m['vq_dim']} != the "
                            f"encoder width {embed} is not supported.")
        section["quantizer"] = {"name": "kmeans", "groups": int(m["vq_groups"]),
                                "num_vars": int(m["vq_vars"]),
                                "combine_groups": bool(m["combine_groups"]),
                                "gamma": float(m["vq_gamma"])}
    elif vq != "none":
        raise UserError(f"{source}: vq_type {vq!r} is not supported (none, gumbel, kmeans).")
    if vq != "none":
        section["quantize"] = "both"      # fairseq feeds the quantized z to both sides
    return section


def objective_section(m: Mapping[str, Any], criterion: Mapping[str, Any]) -> dict[str, Any]:
    """``future_contrastive`` fields of the same config (fairseq ``loss_weights`` included)."""
    offset = m["offset"]
    section = {"prediction_steps": int(m["prediction_steps"]),
               "num_negatives": int(m["num_negatives"]),
               "cross_sample_negatives": int(m["cross_sample_negatives"]),
               "sample_distance": None if m["sample_distance"] is None
               else int(m["sample_distance"]),
               "offset": None if str(offset) == "auto" else int(offset),
               "infonce": bool(m["infonce"]), "balanced_classes": bool(m["balanced_classes"]),
               "prediction_dropout": float(m["dropout"]),
               "context_dropout": float(m["dropout_agg"])}
    weights = criterion.get("loss_weights")
    if weights:
        weight = float(list(weights)[0])
        section["aux_loss_weight" if m["vq_type"] == "kmeans" else "diversity_weight"] = weight
    return section


# ------------------------------------------------------------------ loading
def step_head_tensors(weight: Tensor, bias: Tensor | None) -> dict[str, Tensor]:
    """fairseq's ``ConvTranspose2d(D_ctx, D_z, (1, K))`` as the objective's head:
    ``weight`` ``[K, D_ctx, D_z]``, ``bias`` ``[D_z]`` (one bias shared by the steps)."""
    if weight.ndim != 4 or weight.shape[2] != 1:
        raise UserError(f"`{HEAD_W}` has shape {list(weight.shape)}; expected "
                        "[D_ctx, D_z, 1, K].")
    w = weight[:, :, 0, :].permute(2, 0, 1).contiguous()
    b = torch.zeros(w.shape[2]) if bias is None else bias.clone()
    return {"head.weight": w, "head.bias": b}


def from_fairseq_wav2vec(path: str | Path):
    """A w2v :class:`~w2v.model.SpeechModel` from a fairseq wav2vec 1.0 / vq-wav2vec checkpoint,
    in eval mode, with ``model.model_config`` (a ``model:`` section) and ``model.load_report``."""
    from w2v.build import ModelConfig, build_model
    from w2v.config.structure import structure
    from w2v.plugins.interop.loading import load_mapped

    source = f"fairseq wav2vec checkpoint {path}"
    state, m, criterion = read_wav2vec_checkpoint(path)
    section = model_section(m, source)
    cfg = structure(section, ModelConfig, path=("model",))
    model = build_model(cfg, m["sample_rate"])
    report = LoadReport(source=source, objective_config=objective_section(m, criterion))
    mapped: MappedState = KeyMap(RULES, source=source).apply(state, report)
    weight = report.objective_state.pop("project_to_steps.weight", None)
    bias = report.objective_state.pop("project_to_steps.bias", None)
    if weight is not None:
        report.objective_state.update(step_head_tensors(weight, bias))
        report.notes.append("The prediction head (fairseq project_to_steps) is kept for the "
                            "future_contrastive objective; see objective_from_report.")
    load_mapped(model, mapped, report)
    model.eval()
    model.model_config = cfg
    model.load_report = report
    return model


def objective_from_report(model):
    """The :class:`FutureContrastiveObjective` of an imported model, with fairseq's prediction
    head loaded (to continue pretraining or score the checkpoint)."""
    from w2v.build import build_objective
    from w2v.config.structure import structure_component

    report = model.load_report
    spec = structure_component("objective", {"name": "future_contrastive",
                                             **report.objective_config}, path="objective")
    objective = build_objective(spec, model)
    if report.objective_state:
        objective.load_state_dict(report.objective_state)
    return objective


# ------------------------------------------------------------------ detection
_MARKERS = (b"feature_aggregator.", b"wav2vec_predictions.project_to_steps")


def detect_fairseq_wav2vec(path: Any) -> bool:
    """True for a fairseq checkpoint of arch ``wav2vec`` (scans the pickle's strings; tensors
    are not loaded). wav2vec 2.0 checkpoints (``wav2vec2``, ``wav2vec_ctc``) are not claimed."""
    p = Path(str(path))
    if not p.is_file():
        return False
    try:
        data = pickle_of(p)
        if data is None:
            return False
        try:
            strings = pickle_strings(data)
        except Exception:  # a legacy (non-zip) file holds more than one pickle: scan bytes
            return all(marker in data for marker in _MARKERS) and b"wav2vec" in data
        if not any(any(m in s for s in strings) for m in _MARKERS):
            return False
        return ARCH.encode() in strings and not ({b"wav2vec2", b"wav2vec_ctc"} & strings)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def load_fairseq_wav2vec(path: Any, dictionary: Any = None, **kwargs: Any):
    """Importer entry for :func:`w2v.load_pretrained` (no dictionary: not a CTC model); a
    malformed file raises a one-line DataError."""
    from w2v.plugins.interop.malformed import reading

    with reading(path, "fairseq wav2vec 1.0 checkpoint"):
        model = from_fairseq_wav2vec(path)
    model.dictionary = None
    return model
