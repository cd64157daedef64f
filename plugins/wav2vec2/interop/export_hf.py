"""Export a w2v wav2vec 2.0 model as a Hugging Face model directory.

Writes ``config.json``, ``preprocessor_config.json`` and ``model.safetensors``
(keys prefixed ``wav2vec2.`` as on the Hub, weight norm as ``weight_g`` /
``weight_v``), and for a CTC model the tokenizer files of its label dictionary
(:mod:`.hf_tokenizer`), so ``Wav2Vec2ForCTC.from_pretrained(DIR)`` and
``transformers.pipeline("automatic-speech-recognition", model=DIR)`` work.
The architecture is ``Wav2Vec2ForCTC`` when the model has a CTC head,
``Wav2Vec2ForPreTraining`` when it has a Gumbel quantizer, else
``Wav2Vec2Model``; a pre-LN Conformer with ``rel_pos`` / ``rope`` positions is
written as the matching ``Wav2Vec2Conformer*`` (:mod:`.conformer`). Parts
Hugging Face's Wav2Vec2 cannot express (another encoder or context network,
causal attention, other Conformer blocks, stacked positional convs, a deep
quantizer projection, ``target_glu``, a BiLSTM CTC head) stop the export with
a UserError. ``w2vrun export`` is the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from w2v.data.dictionary import Dictionary
from w2v.errors import UserError
from w2v.model import SpeechModel
from w2v.plugins.interop.keymap import KeyMap, LoadReport
from w2v.plugins.interop.safetensors_io import write_safetensors

from ..feature_encoder import Wav2Vec2FeatureEncoder
from ..transformer import TransformerAggregator
from .build import split_attention
from .hf_tokenizer import TOKENIZER_FILES, HFVocabulary, hf_vocabulary, write_tokenizer
from . import conformer

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


#: What the export error says can be exported (docs/interop.md has the full list).
EXPORTABLE = ("Exportable: wav2vec 2.0 models, i.e. the `wav2vec2_conv` encoder with the "
              "`transformer` aggregator (post-LN BASE or pre-LN LARGE; Conformer blocks only "
              "pre-LN with pos_enc_type rel_pos or rope), optionally with a Gumbel "
              "quantizer (as Wav2Vec2ForPreTraining) or a linear CTC head (as Wav2Vec2ForCTC); "
              "see docs/interop.md.")


def _component(model: SpeechModel, slot: str) -> str:
    """``slot``'s registered name (``logmel``), or its class name for a model built by hand."""
    spec = getattr(getattr(model, "model_config", None), slot, None)
    part = getattr(model, slot, None)
    return getattr(spec, "name", None) or ("null" if part is None else type(part).__name__)


def _help(model: SpeechModel, slot: str) -> str:
    """`` (<registered help>)`` of ``slot``'s component, or nothing."""
    from w2v.plugin_manager import registry

    reg = registry().components.get((slot, _component(model, slot)))
    return f" ({reg.help})" if reg is not None and reg.help else ""


def check_exportable(model: SpeechModel) -> None:
    """A UserError naming every part Hugging Face's Wav2Vec2 cannot express."""
    from w2v.plugins.quantizers.gumbel import GumbelQuantizer

    enc, agg = model.encoder, model.aggregator
    parts = [f"the model's {slot} `{_component(model, slot)}`{_help(model, slot)} has no "
             f"counterpart in Hugging Face's Wav2Vec2, {counterpart}"
             for slot, ok, counterpart in (
                 ("encoder", isinstance(enc, Wav2Vec2FeatureEncoder),
                  "which starts from the waveform conv feature encoder `wav2vec2_conv`"),
                 ("aggregator", isinstance(agg, TransformerAggregator),
                  "whose context network is the `transformer`")) if not ok]
    if parts:
        raise UserError("; ".join(parts) + ", so it cannot be exported.", hint=EXPORTABLE)
    c = agg.config
    head = model.head
    problems = [what for bad, what in [
        (c.causal, "causal attention"),
        (c.layer_type == "transformer" and c.pos_conv_depth != 1,
         f"pos_conv_depth {c.pos_conv_depth} (only 1)"),
        (enc.layer_norm.eps != c.layer_norm_eps, "different LayerNorm epsilons"),
        (model.quantizes_input, "quantized inputs"),
        (model.quantizer is not None and head is None
         and not isinstance(model.quantizer, GumbelQuantizer),
         f"the quantizer `{_component(model, 'quantizer')}` (only Gumbel)"),
        (isinstance(model.quantizer, GumbelQuantizer) and head is None
         and not isinstance(getattr(model.quantizer, "weight_proj_hidden", None), nn.Identity),
         "a deep quantizer projection"),
        (model.quantizer is not None and getattr(model.quantizer, "combine_groups", False),
         "a codebook shared across groups"),
        (head is not None and getattr(head, "lstm", None) is not None,
         "a BiLSTM CTC head (`lstm_layers` > 0; only a linear head)"),
        (head is not None and getattr(head, "reads_hidden_states", False),
         "a CTC head over weighted hidden states (`layers: weighted`; only the last layer)"),
        (head is not None and not hasattr(head, "proj"),
         f"the head `{_component(model, 'head')}` (only the linear CTC head)"),
    ] if bad] + (conformer.export_problems(c) if c.layer_type == "conformer" else [])
    if problems:
        raise UserError(f"Hugging Face's Wav2Vec2 cannot express {', '.join(problems)}; the model "
                        f"cannot be exported.", hint=EXPORTABLE)


def head_state(head: nn.Module) -> dict[str, Tensor]:
    """The CTC head as Hugging Face's ``lm_head`` (``weight`` ``[V, D]``, ``bias`` ``[V]``),
    fairseq's blank bias folded in: ``add`` adds ``blank_weight`` to the blank row's bias,
    ``set`` (a constant blank logit) zeroes the blank row and makes its bias the constant."""
    weight = head.proj.weight.detach().clone()
    bias = head.proj.bias.detach().clone()
    blank, value = int(getattr(head, "blank", 0)), float(getattr(head, "blank_weight", 0.0))
    if getattr(head, "blank_mode", "add") == "set":
        weight[blank] = 0.0
        bias[blank] = value
    else:
        bias[blank] += value
    return {"head.proj.weight": weight, "head.proj.bias": bias}


def hf_config(model: SpeechModel, objective_state: Mapping[str, Tensor],
              vocabulary: HFVocabulary | None = None) -> dict[str, Any]:
    """``config.json`` of ``model``; a CTC model's special-token ids come from ``vocabulary``."""
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
        if vocabulary is not None:
            cfg.update(bos_token_id=vocabulary.token_id(vocabulary.bos_token),
                       eos_token_id=vocabulary.token_id(vocabulary.eos_token))
    return conformer.hf_config(cfg, c) if c.layer_type == "conformer" else cfg


def to_hf(source: SpeechModel | str | Path, directory: str | Path, *,
          objective_state: Mapping[str, Tensor] | None = None,
          dictionary: Dictionary | str | Path | None = None) -> LoadReport:
    """Write a model as a Hugging Face directory (see the module docstring).

    Args:
        source: a wav2vec 2.0 :class:`~w2v.model.SpeechModel`, or anything
            :func:`w2v.load_pretrained` reads (a w2v run or stage directory, a ``model.pt``,
            a fairseq ``.pt``, a Hugging Face directory).
        directory: created if needed; files of an earlier export there are replaced.
        objective_state: ``project_q.*`` / ``final_proj.*`` of the masked contrastive
            objective, written as HF's ``project_q`` / ``project_hid``. Default for a path:
            the import's ``load_report.objective_state``, or the objective in the w2v run's
            last trainer checkpoint when its model weights equal the model file's.
        dictionary: the CTC label dictionary (a Dictionary, ``dict.ltr.txt`` or
            ``vocab.json``); default the model's own. A CTC model needs one (the tokenizer).

    Returns:
        A :class:`~.keymap.LoadReport` of what was written (``loaded``: w2v keys) and dropped.
    """
    if isinstance(source, nn.Module):
        model = source
    else:
        model, saved = load_for_export(source, dictionary)
        objective_state = saved if objective_state is None else objective_state
    check_exportable(model)
    objective_state = dict(objective_state or {})
    labels = ctc_dictionary(model, dictionary) if model.head is not None else None
    vocabulary = hf_vocabulary(labels) if labels is not None else None
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = LoadReport(source=f"Hugging Face export {out_dir}")
    state = {k: v for k, v in model.state_dict().items()}
    if isinstance(model.projection, nn.Identity):                  # HF always has a projection
        dim = model.aggregator.input_dim
        state["projection.weight"] = torch.eye(dim)
        state["projection.bias"] = torch.zeros(dim)
    if model.head is not None:
        state.update(head_state(model.head))
    state = split_attention(state)
    rules: list[tuple[str, str]] = list(EXPORT_RULES)
    if model.head is not None and model.quantizer is not None:
        rules.insert(0, (r"quantizer\..*", "drop:quantizer (Wav2Vec2ForCTC has none)"))
    masker = model.masker
    if masker is not None and float(masker.config.mask_prob) <= 0:
        rules.insert(0, (r"masker\.mask_emb", "drop:mask embedding of a masker with mask_prob 0"))
    if model.head is not None:
        rules.append((r"head\..*", "drop:CTC head state without a place in Hugging Face"))
    agg = model.aggregator.config
    if agg.layer_type == "conformer":
        rules = conformer.export_rules(rules)
    mapped = KeyMap(rules, source="w2v model").apply(state, report)
    tensors = dict(mapped.tensors)                                 # keyed by HF names
    if agg.layer_type == "conformer":
        tensors.update(conformer.placeholder_tensors(agg))
        if not agg.fairseq_compat:
            report.notes.append("Hugging Face's Conformer lets padded frames reach the conv "
                                "module (this model, fairseq_compat false, does not): padded "
                                "batches will differ near the padding.")
    if model.quantizer is not None and model.head is None:
        obj = KeyMap(OBJECTIVE_RULES, source="objective state").apply(objective_state, report)
        tensors.update(obj.tensors)
        if not obj.tensors:
            report.notes.append("No objective state given: Hugging Face initialises project_q "
                                "and project_hid randomly.")
    report.loaded = list(mapped.origin.values())
    write_safetensors(tensors, out_dir / "model.safetensors")
    (out_dir / "config.json").write_text(
        json.dumps(hf_config(model, objective_state, vocabulary), indent=2))
    enc = model.encoder
    (out_dir / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1,
        "sampling_rate": model.sample_rate, "padding_value": 0.0, "padding_side": "right",
        "do_normalize": bool(model.normalize),
        "return_attention_mask": enc.mode == "layer_norm"}, indent=2))
    for name in TOKENIZER_FILES:                   # a stale tokenizer would claim a CTC model
        (out_dir / name).unlink(missing_ok=True)
    if labels is not None:
        write_tokenizer(labels, out_dir)
    elif model.head is not None:
        report.notes.append("The model carries no label dictionary, so no tokenizer was "
                            "written: transformers' pipeline needs one (pass `dictionary=`).")
    if getattr(enc, "group_norm_padding", "include") == "exclude":
        report.notes.append("group_norm_padding `exclude` has no Hugging Face equivalent: padded "
                            "batches will differ there.")
    return report


def load_for_export(path: str | Path, dictionary=None
                    ) -> tuple[SpeechModel, dict[str, Tensor]]:
    """The model at ``path`` (anything :func:`w2v.load_pretrained` reads) with its label
    dictionary (``dictionary``, else its own, else a Hugging Face directory's vocab.json) and
    the objective state saved with it (:func:`saved_objective_state`)."""
    from w2v.checkpoint_formats import load_pretrained

    from w2v.plugins.ctc.transcribe import attach_dictionary, load_dictionary

    if isinstance(dictionary, (str, Path)):
        dictionary = load_dictionary(dictionary)
    model = load_pretrained(path, dictionary=dictionary)
    attach_dictionary(model, dictionary, source=path)
    return model, saved_objective_state(path, model)


def ctc_dictionary(model: SpeechModel, dictionary=None) -> Dictionary | None:
    """The label dictionary the tokenizer is written from (``dictionary`` or the model's;
    None when neither exists), checked against the CTC head's size."""
    from w2v.plugins.ctc.transcribe import load_dictionary

    if isinstance(dictionary, (str, Path)):
        dictionary = load_dictionary(dictionary)
    dictionary = dictionary if dictionary is not None else getattr(model, "dictionary", None)
    size = model.head.proj.out_features
    if dictionary is not None and len(dictionary) != size:
        raise UserError(f"the dictionary has {len(dictionary)} symbols but the model's CTC head "
                        f"has {size} outputs.",
                        hint="Pass the dict.ltr.txt the model was fine-tuned with.")
    return dictionary


def saved_objective_state(source: str | Path, model: SpeechModel) -> dict[str, Tensor]:
    """The objective's tensors saved with ``source``: an import's report, or the objective
    of the w2v run's ``checkpoints/<stage>/last.pt`` when that checkpoint's model weights
    equal ``model``'s (else nothing: the caller notes the gap)."""
    report = getattr(model, "load_report", None)
    if report is not None and getattr(report, "objective_state", None):
        return dict(report.objective_state)
    from w2v.checkpoint_formats import find_model_file, is_w2v

    path = Path(source)
    if not is_w2v(path):
        return {}
    model_file = find_model_file(path)
    last = model_file.parent.parent / "checkpoints" / model_file.parent.name / "last.pt"
    if not last.is_file():
        return {}
    from w2v.train.checkpoint import load_checkpoint

    state = load_checkpoint(last)
    ours = model.state_dict()
    saved = state.get("model") or {}
    if set(saved) != set(ours) or not all(torch.equal(saved[k].cpu(), ours[k].cpu())
                                          for k in ours):
        return {}
    return {k: v for k, v in (state.get("objective") or {}).items()
            if k.split(".")[0] in ("project_q", "final_proj", "target_glu")}
