"""Conformer checkpoints: key maps and configs for fairseq and Hugging Face, in and out.

fairseq runs Conformer blocks with absolute positions (``pos_enc_type: abs``)
inside its ``TransformerEncoder`` (positional conv, post-LN or pre-LN), and
with ``rel_pos`` / ``rope`` inside ``ConformerEncoder``, which builds the
positional conv but never runs it. Hugging Face's ``Wav2Vec2Conformer*``
likewise keeps ``pos_conv_embed`` unused, and is always pre-LN (no input
LayerNorm, a final one); its ``position_embeddings_type`` ``relative`` /
``rotary`` / ``None`` is w2v's ``rel_pos`` / ``rope`` / no positions at all.
Both let padded frames reach the depthwise conv, so imports set the
aggregator's ``fairseq_compat``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from w2v.errors import UserError

from ..transformer import TransformerAggregatorConfig

#: Hugging Face ``position_embeddings_type`` <-> w2v ``pos_enc_type``.
HF_POSITIONS = {"relative": "rel_pos", "rotary": "rope", None: "abs"}
W2V_TO_HF_POSITIONS = {"rel_pos": "relative", "rope": "rotary"}

UNUSED_POS_CONV = "positional conv that the Conformer encoder builds but never runs"
INV_FREQ = "rotary frequencies (recomputed from the base)"

#: ESPnet attention names inside ``encoder.layers.N.self_attn``, shared by fairseq and
#: Hugging Face (prefix removed).
ESPNET_ATTENTION_RULES: list[tuple[str, str]] = [
    (r"encoder\.layers\.(\d+)\.self_attn\.linear_(q|k|v)\.(weight|bias)",
     r"aggregator.layers.\1.self_attn.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.linear_out\.(weight|bias)",
     r"aggregator.layers.\1.self_attn.out_proj.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn\.linear_pos\.weight",
     r"aggregator.layers.\1.self_attn.linear_pos.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.pos_bias_(u|v)",
     r"aggregator.layers.\1.self_attn.pos_bias_\2"),
]

#: fairseq ESPnet attention names (prefix removed).
FAIRSEQ_ATTENTION_RULES: list[tuple[str, str]] = [
    *ESPNET_ATTENTION_RULES,
    (r"encoder\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq", f"drop:{INV_FREQ}"),
]

#: Hugging Face Conformer context-network key (``wav2vec2_conformer.`` removed) -> w2v key.
HF_ENCODER_RULES: list[tuple[str, str]] = [
    (r"encoder\.pos_conv_embed\..*", f"drop:{UNUSED_POS_CONV}"),
    (r"encoder\.embed_positions\.inv_freq", f"drop:{INV_FREQ}"),
    (r"encoder\.layer_norm\.(weight|bias)", r"aggregator.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.ffn(1|2)_layer_norm\.(weight|bias)",
     r"aggregator.layers.\1.ffn\2.layer_norm.\3"),
    (r"encoder\.layers\.(\d+)\.ffn(1|2)\.intermediate_dense\.(weight|bias)",
     r"aggregator.layers.\1.ffn\2.w_1.\3"),
    (r"encoder\.layers\.(\d+)\.ffn(1|2)\.output_dense\.(weight|bias)",
     r"aggregator.layers.\1.ffn\2.w_2.\3"),
    *ESPNET_ATTENTION_RULES,
    (r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|final_layer_norm)\.(weight|bias)",
     r"aggregator.layers.\1.\2.\3"),
    (r"encoder\.layers\.(\d+)\.conv_module\.((?:layer_norm|batch_norm)\.(?:weight|bias)|"
     r"batch_norm\.(?:running_mean|running_var|num_batches_tracked)|"
     r"(?:pointwise_conv1|depthwise_conv|pointwise_conv2)\.weight)",
     r"aggregator.layers.\1.conv_module.\2"),
]


def fairseq_conformer_rules(pos_enc_type: str) -> list[tuple[str, str]]:
    """Rules to put before fairseq's generic ones: ESPnet attention names, and for
    ``rel_pos`` / ``rope`` the unused positional conv dropped."""
    rules = list(FAIRSEQ_ATTENTION_RULES)
    if pos_enc_type != "abs":
        rules.insert(0, (r"encoder\.pos_conv\..*", f"drop:{UNUSED_POS_CONV}"))
    return rules


def check_fairseq_conformer(m: Mapping[str, Any], source: str) -> None:
    """fairseq Conformer settings w2v can reproduce: ``rel_pos`` / ``rope`` need ESPnet
    attention (``attn_type: espnet``), as fairseq's own configs have it."""
    pos, attn = m["pos_enc_type"], m["attn_type"] or ""
    if pos not in ("abs", "rel_pos", "rope"):
        raise UserError(f"{source}: `pos_enc_type` is {pos!r}, which w2v does not support; "
                        f"supported: `abs`, `rel_pos`, `rope`.")
    if attn not in ("", "espnet"):
        raise UserError(f"{source}: `attn_type` is {attn!r}, which w2v does not support; "
                        f"supported: `` (fairseq attention), `espnet`.")
    if pos != "abs" and attn != "espnet":
        raise UserError(f"{source}: pos_enc_type `{pos}` with fairseq's own attention "
                        f"(attn_type {attn!r}) has no positions in fairseq (rope) or does not run "
                        f"(rel_pos); w2v supports `{pos}` with attn_type `espnet`.")


def hf_conformer_aggregator(c: Mapping[str, Any], source: str) -> TransformerAggregatorConfig:
    """The aggregator a Hugging Face ``Wav2Vec2ConformerConfig`` describes (pre-LN, no
    positional conv, Hugging Face's padding)."""
    act = c.get("hidden_act", "swish")
    if act not in ("swish", "silu"):
        raise UserError(f"{source}: `hidden_act` is {act!r}, which w2v does not support for "
                        f"Conformer blocks; supported: `swish`.")
    kind = c.get("position_embeddings_type", "relative")
    if kind not in HF_POSITIONS:
        raise UserError(f"{source}: `position_embeddings_type` is {kind!r}, which w2v does not "
                        f"support; supported: `relative`, `rotary`, null.")
    return TransformerAggregatorConfig(
        embed_dim=int(c.get("hidden_size", 1024)), layers=int(c.get("num_hidden_layers", 24)),
        ffn_dim=int(c.get("intermediate_size", 4096)),
        heads=int(c.get("num_attention_heads", 16)), layer_norm_first=True,
        dropout=float(c.get("hidden_dropout", 0.1)),
        attention_dropout=float(c.get("attention_dropout", 0.1)),
        activation_dropout=float(c.get("activation_dropout", 0.1)),
        layerdrop=float(c.get("layerdrop", 0.1)),
        conv_pos=int(c.get("num_conv_pos_embeddings", 128)),
        conv_pos_groups=int(c.get("num_conv_pos_embedding_groups", 16)),
        pos_conv_depth=0, layer_type="conformer",
        conformer_kernel=int(c.get("conv_depthwise_kernel_size", 31)),
        pos_enc_type=HF_POSITIONS[kind],
        rotary_base=float(c.get("rotary_embedding_base", 10000)),
        required_seq_len_multiple=1, layer_norm_eps=float(c.get("layer_norm_eps", 1e-5)),
        fairseq_compat=True)


# ------------------------------------------------------------------------------- export


def export_problems(c: TransformerAggregatorConfig) -> list[str]:
    """What Hugging Face's ``Wav2Vec2Conformer`` cannot express about a Conformer aggregator."""
    return [what for bad, what in [
        (c.pos_enc_type == "abs" and c.pos_conv_depth != 0,
         "Conformer blocks with the positional conv (pos_enc_type `abs`; Hugging Face's "
         "Conformer never runs its positional conv)"),
        (not c.layer_norm_first,
         "post-LN Conformer blocks (layer_norm_first false; Hugging Face's Conformer is pre-LN)"),
        (c.layer_norm_eps != 1e-5, "a LayerNorm epsilon other than 1e-5 in Conformer blocks"),
    ] if bad]


#: w2v Conformer context-network key -> Hugging Face key.
EXPORT_ENCODER_RULES: list[tuple[str, str]] = [
    (r"aggregator\.layer_norm\.(weight|bias)", r"wav2vec2_conformer.encoder.layer_norm.\1"),
    (r"aggregator\.layers\.(\d+)\.ffn(1|2)\.layer_norm\.(weight|bias)",
     r"wav2vec2_conformer.encoder.layers.\1.ffn\2_layer_norm.\3"),
    (r"aggregator\.layers\.(\d+)\.ffn(1|2)\.w_1\.(weight|bias)",
     r"wav2vec2_conformer.encoder.layers.\1.ffn\2.intermediate_dense.\3"),
    (r"aggregator\.layers\.(\d+)\.ffn(1|2)\.w_2\.(weight|bias)",
     r"wav2vec2_conformer.encoder.layers.\1.ffn\2.output_dense.\3"),
    (r"aggregator\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)",
     r"wav2vec2_conformer.encoder.layers.\1.self_attn.linear_\2.\3"),
    (r"aggregator\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)",
     r"wav2vec2_conformer.encoder.layers.\1.self_attn.linear_out.\2"),
    (r"aggregator\.layers\.(\d+)\.self_attn\.(linear_pos\.weight|pos_bias_u|pos_bias_v)",
     r"wav2vec2_conformer.encoder.layers.\1.self_attn.\2"),
    (r"aggregator\.layers\.(\d+)\.((?:self_attn_layer_norm|final_layer_norm)\.(?:weight|bias))",
     r"wav2vec2_conformer.encoder.layers.\1.\2"),
    (r"aggregator\.layers\.(\d+)\.conv_module\.(.+)",
     r"wav2vec2_conformer.encoder.layers.\1.conv_module.\2"),
]


def export_rules(rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The Wav2Vec2 export ``rules`` turned into Conformer ones: ``wav2vec2.`` becomes
    ``wav2vec2_conformer.``, and the context network's keys are the Conformer's."""
    kept = [(pattern, action.replace("wav2vec2.", "wav2vec2_conformer.", 1))
            for pattern, action in rules if not pattern.startswith(r"aggregator\.")]
    return kept + EXPORT_ENCODER_RULES


def hf_config(cfg: dict[str, Any], c: TransformerAggregatorConfig) -> dict[str, Any]:
    """A Wav2Vec2 ``config.json`` (``cfg``) as the Conformer one of aggregator ``c``."""
    out = dict(cfg)
    out["model_type"] = "wav2vec2-conformer"
    out["architectures"] = [a.replace("Wav2Vec2", "Wav2Vec2Conformer", 1)
                            for a in cfg.get("architectures", [])]
    out.pop("do_stable_layer_norm", None)
    out.update(hidden_act="swish", conv_depthwise_kernel_size=c.conformer_kernel,
               conformer_conv_dropout=c.dropout, attention_dropout=c.dropout,
               activation_dropout=c.dropout,
               position_embeddings_type=W2V_TO_HF_POSITIONS.get(c.pos_enc_type),
               rotary_embedding_base=c.rotary_base)
    return out


def placeholder_tensors(c: TransformerAggregatorConfig) -> dict[str, Tensor]:
    """Tensors Hugging Face's Conformer holds but never uses: the positional conv (a valid
    weight-normed conv, so loading it cannot produce NaNs) and the rotary frequencies."""
    p = "wav2vec2_conformer.encoder."
    d, k, g = c.embed_dim, c.conv_pos, c.conv_pos_groups
    out = {f"{p}pos_conv_embed.conv.weight_g": torch.ones(1, 1, k),
           f"{p}pos_conv_embed.conv.weight_v": torch.ones(d, d // g, k),
           f"{p}pos_conv_embed.conv.bias": torch.zeros(d)}
    if c.pos_enc_type == "rope":
        head = d // c.heads
        out[f"{p}embed_positions.inv_freq"] = 1.0 / (
            c.rotary_base ** (torch.arange(0, head, 2, dtype=torch.int64).float() / head))
    return out
