"""Conformer parity with Hugging Face and fairseq, for absolute, relative and rotary positions.

Peers: random-initialised ``transformers`` ``Wav2Vec2Conformer*`` models, saved as Hugging
Face directories or renamed to fairseq checkpoints, loaded with ``w2v.load_pretrained``.
fairseq itself is not installed, so its forward is :func:`fairseq_extract_features`: the
Hugging Face model's own modules run in the order fairseq's ``TransformerEncoder`` (``abs``)
and ``ConformerEncoder`` (``rel_pos`` / ``rope``) run them, post-LN or pre-LN, with fairseq's
padding to a multiple of 2 for ``abs`` (the frame that reached the last valid frames through the
depthwise conv and made imports differ by ~0.1 before the fix). Every block's output, the final
output and the local features must agree within 1e-4 in fp32 on valid frames, padded batches
included. The measured differences are ``max_differences(...)``.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F

import w2v

transformers = pytest.importorskip("transformers")
from transformers import (Wav2Vec2ConformerConfig, Wav2Vec2ConformerForCTC,  # noqa: E402
                          Wav2Vec2ConformerForPreTraining, Wav2Vec2ConformerModel)

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)
TOL = 1e-4
HF_KIND = {"abs": None, "rel_pos": "relative", "rope": "rotary"}


def hf_conformer(cls=Wav2Vec2ConformerModel, pos: str = "rel_pos", seed: int = 0):
    """A tiny random Conformer (3 blocks, width 96, depthwise kernel 7) with non-trivial norms,
    biases, position biases and BatchNorm statistics."""
    torch.manual_seed(seed)
    config = Wav2Vec2ConformerConfig(
        hidden_size=96, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
        conv_dim=[16, 16, 24], conv_kernel=[10, 3, 2], conv_stride=[5, 2, 2],
        feat_extract_norm="layer", conv_bias=True, num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4, conv_depthwise_kernel_size=7,
        position_embeddings_type=HF_KIND[pos], codevector_dim=16, proj_codevector_dim=12,
        num_codevectors_per_group=10, num_codevector_groups=2, vocab_size=9,
        max_source_positions=512, hidden_act="swish")          # fairseq: swish, always
    model = cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "pos_bias" in name:
                p.add_(0.1 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model


def base_of(model):
    return getattr(model, "wav2vec2_conformer", model)


def padded_batch(lengths: list[int], seed: int = 1):
    """``(wave [B, S], lengths [B])``, zeros after each length (what a data loader pads with)."""
    gen = torch.Generator().manual_seed(seed)
    wave = torch.randn(len(lengths), max(lengths), generator=gen)
    lengths_t = torch.tensor(lengths)
    return wave.masked_fill(torch.arange(wave.shape[1])[None] >= lengths_t[:, None], 0.0), \
        lengths_t


# 3200 samples -> 159 frames (odd: fairseq's abs path pads one frame); 2500 -> 124 frames.
BATCHES = {"single": [3200], "padded": [3200, 2500]}


def hf_features(hf, wave, lengths):
    """``(local, [raw block outputs], output)`` of a Hugging Face Conformer."""
    base = base_of(hf)
    raw = []
    hooks = [layer.register_forward_hook(lambda m, i, o: raw.append(o[0]))
             for layer in base.encoder.layers]
    mask = (torch.arange(wave.shape[1])[None] < lengths[:, None]).long()
    try:
        with torch.no_grad():
            out = base(wave, attention_mask=mask)
    finally:
        for h in hooks:
            h.remove()
    return out.extract_features, raw, out.last_hidden_state


def fairseq_extract_features(hf, wave, lengths, pos: str, layer_norm_first: bool):
    """fairseq ``Wav2Vec2Model.extract_features`` of a Conformer, from ``hf``'s modules:
    zero padded frames; ``abs``: add the positional conv; post-LN: LayerNorm; ``abs``
    (``TransformerEncoder``): pad to a multiple of 2, the added frames masked in attention
    only; the blocks; pre-LN: final LayerNorm."""
    base = base_of(hf)
    enc = base.encoder
    with torch.no_grad():
        local = base.feature_projection.layer_norm(base.feature_extractor(wave).transpose(1, 2))
        x = base.feature_projection.projection(local)
        T = x.shape[1]
        frames = base._get_feat_extract_output_lengths(lengths)
        padding = torch.arange(T)[None] >= frames[:, None]
        x = x.masked_fill(padding[..., None], 0.0)
        if pos == "abs":
            x = x + enc.pos_conv_embed(x)
        if not layer_norm_first:
            x = enc.layer_norm(x)
        if pos == "abs" and T % 2:
            x = F.pad(x, (0, 0, 0, 1))
            padding = F.pad(padding, (0, 1), value=True)
        bias = torch.zeros(padding.shape).masked_fill(padding, float("-inf"))[:, None, None, :]
        positions = enc.embed_positions(x) if enc.embed_positions is not None else None
        layers = []
        for layer in enc.layers:
            x = layer(x, attention_mask=bias, relative_position_embeddings=positions)[0]
            layers.append(x[:, :T])
        out = enc.layer_norm(layers[-1]) if layer_norm_first else layers[-1]
    return local, layers, out


def max_differences(ours, reference) -> dict[str, float]:
    """Largest absolute difference on valid frames of ``local``, ``layers[i]`` and ``output``."""
    local, layers, out = reference
    valid = torch.arange(ours.output.shape[1])[None] < ours.lengths[:, None]

    def diff(a, b):
        return float((a - b).abs()[valid].max())

    result = {"local": diff(ours.local, local)}
    assert len(ours.layers) == len(layers)
    result.update({f"layer{i}": diff(a, b) for i, (a, b) in enumerate(zip(ours.layers, layers))})
    result["output"] = diff(ours.output, out)
    return result


def assert_parity(diffs: dict[str, float]) -> None:
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < TOL, f"{worst} differs by {diffs[worst]:.2e}: {diffs}"


# ------------------------------------------------------------------ Hugging Face directories


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("pos", ["rel_pos", "rope", "abs"])
def test_hugging_face_conformer_directory_matches_transformers(tmp_path, pos, batch):
    hf = hf_conformer(Wav2Vec2ConformerForPreTraining, pos)
    hf.save_pretrained(tmp_path)
    model = w2v.load_pretrained(tmp_path)
    agg = model.aggregator.config
    assert (agg.layer_type, agg.pos_enc_type, agg.layer_norm_first) == ("conformer", pos, True)
    assert model.aggregator.positional is None              # HF never runs its positional conv
    wave, lengths = padded_batch(BATCHES[batch])
    with torch.no_grad():
        ours = model.extract_features(wave, lengths)
    assert_parity(max_differences(ours, hf_features(hf, wave, lengths)))
    report = model.load_report
    assert not report.missing
    assert set(report.dropped.values()) <= {"positional conv that the Conformer encoder builds "
                                            "but never runs",
                                            "rotary frequencies (recomputed from the base)"}
    assert any(k.endswith("pos_conv_embed.conv.bias") for k in report.dropped)
    torch.testing.assert_close(report.objective_state["final_proj.weight"], hf.project_hid.weight)


def assert_same_ctc_logits(model, hf) -> None:
    """w2v's CTC logits equal the Hugging Face model's on the valid frames of a padded batch."""
    wave, lengths = padded_batch([3200, 2500])
    mask = (torch.arange(wave.shape[1])[None] < lengths[:, None]).long()
    with torch.no_grad():
        ours = model.extract_features(wave, lengths)
        logits = model.head(ours.output)
        ref = hf(wave, attention_mask=mask).logits
    valid = torch.arange(logits.shape[1])[None] < ours.lengths[:, None]
    assert float((logits - ref).abs()[valid].max()) < TOL


def test_hugging_face_conformer_ctc_directory_gives_the_same_logits(tmp_path):
    hf = hf_conformer(Wav2Vec2ConformerForCTC, "rope")
    hf.save_pretrained(tmp_path)
    model = w2v.load_pretrained(tmp_path)
    assert_same_ctc_logits(model, hf)
    assert model.head.proj.out_features == 9 and model.quantizer is None


# ------------------------------------------------------------------------ fairseq checkpoints

_FAIRSEQ_RULES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(.*)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(.*)",
     r"feature_extractor.conv_layers.\1.2.1.\2"),
    (r"feature_projection\.layer_norm\.(.*)", r"layer_norm.\1"),
    (r"feature_projection\.projection\.(.*)", r"post_extract_proj.\1"),
    (r"masked_spec_embed", "mask_emb"),
    (r"encoder\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0",
     "encoder.pos_conv.0.weight_g"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1",
     "encoder.pos_conv.0.weight_v"),
    (r"encoder\.embed_positions\.inv_freq", None),
    (r"encoder\.layers\.(\d+)\.ffn(\d)_layer_norm\.(.*)", r"encoder.layers.\1.ffn\2.layer_norm.\3"),
    (r"encoder\.layers\.(\d+)\.ffn(\d)\.intermediate_dense\.(.*)", r"encoder.layers.\1.ffn\2.w_1.\3"),
    (r"encoder\.layers\.(\d+)\.ffn(\d)\.output_dense\.(.*)", r"encoder.layers.\1.ffn\2.w_2.\3"),
    (r"encoder\.(.*)", r"encoder.\1"),
]


def fairseq_state(hf, pos: str) -> dict[str, torch.Tensor]:
    """``hf``'s weights under fairseq's names (written here independently of the importer):
    ESPnet attention (``linear_q`` ...) for ``rel_pos`` / ``rope``, fairseq's own
    (``q_proj`` ...) for ``abs``; ``rope`` layers carry their ``rotary_emb.inv_freq``."""
    out = {}
    for key, value in base_of(hf).state_dict().items():
        for pattern, repl in _FAIRSEQ_RULES:
            if re.fullmatch(pattern, key):
                break
        else:
            raise AssertionError(f"test mapping misses {key}")
        if repl is None:
            continue
        new = re.sub(pattern, repl, key)
        if pos == "abs":
            new = re.sub(r"self_attn\.linear_(q|k|v)\.", r"self_attn.\1_proj.", new)
            new = new.replace("self_attn.linear_out.", "self_attn.out_proj.")
        out[new] = value.clone()
    if pos == "rope":
        inv_freq = base_of(hf).encoder.embed_positions.inv_freq
        for i in range(len(base_of(hf).encoder.layers)):
            out[f"encoder.layers.{i}.self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
    return out


def fairseq_checkpoint(tmp_path, hf, pos: str, layer_norm_first: bool):
    model = {"_name": "wav2vec2", "extractor_mode": "layer_norm", "conv_bias": True,
             "conv_feature_layers": "[(16, 10, 5), (16, 3, 2), (24, 2, 2)]",
             "encoder_layers": 3, "encoder_embed_dim": 96, "encoder_ffn_embed_dim": 128,
             "encoder_attention_heads": 4, "layer_norm_first": layer_norm_first,
             "conv_pos": 8, "conv_pos_groups": 4, "layer_type": "conformer",
             "depthwise_conv_kernel_size": 7, "pos_enc_type": pos,
             "attn_type": "" if pos == "abs" else "espnet", "required_seq_len_multiple": 2,
             "max_positions": 512, "activation_fn": "gelu"}
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": fairseq_state(hf, pos),
                "cfg": {"model": model, "task": {"_name": "audio_pretraining",
                                                 "normalize": False, "sample_rate": 16000}}},
               path)
    return path


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("layer_norm_first", [False, True], ids=["post_ln", "pre_ln"])
@pytest.mark.parametrize("pos", ["abs", "rel_pos", "rope"])
def test_fairseq_conformer_checkpoint_matches_fairseq(tmp_path, pos, layer_norm_first, batch):
    hf = hf_conformer(Wav2Vec2ConformerModel, pos)
    model = w2v.load_pretrained(fairseq_checkpoint(tmp_path, hf, pos, layer_norm_first))
    agg = model.aggregator.config
    assert (agg.pos_enc_type, agg.layer_norm_first, agg.fairseq_compat) == \
        (pos, layer_norm_first, True)
    assert (model.aggregator.positional is None) == (pos != "abs")
    wave, lengths = padded_batch(BATCHES[batch])
    with torch.no_grad():
        ours = model.extract_features(wave, lengths)
    reference = fairseq_extract_features(hf, wave, lengths, pos, layer_norm_first)
    assert_parity(max_differences(ours, reference))
    report = model.load_report
    assert not report.missing
    if pos != "abs":
        assert "encoder.pos_conv.0.weight_v" in report.dropped      # built, never run by fairseq


def test_without_fairseq_compat_padding_never_reaches_valid_frames(tmp_path):
    """The w2v default: a padded batch gives each utterance the features it gets alone (and an
    odd-length input is not padded), which fairseq's Conformer does not."""
    hf = hf_conformer(Wav2Vec2ConformerModel, "abs")
    model = w2v.load_pretrained(fairseq_checkpoint(tmp_path, hf, "abs", False))
    wave, lengths = padded_batch([3200, 2500])
    with torch.no_grad():
        compat = model.extract_features(wave, lengths)
        model.aggregator.compat_padding = False
        for layer in model.aggregator.layers:
            layer.fairseq_compat = False
        batched = model.extract_features(wave, lengths)
        alone = model.extract_features(wave[1:, :2500])
    n = int(alone.output.shape[1])
    torch.testing.assert_close(batched.output[1, :n], alone.output[0], atol=1e-5, rtol=0)
    assert float((compat.output[1, :n] - alone.output[0]).abs().max()) > 1e-3


def test_fairseq_rel_pos_with_fairseq_attention_is_refused(tmp_path):
    hf = hf_conformer(Wav2Vec2ConformerModel, "rel_pos")
    path = fairseq_checkpoint(tmp_path, hf, "rel_pos", True)
    ckpt = torch.load(path, weights_only=False)
    ckpt["cfg"]["model"]["attn_type"] = ""
    torch.save(ckpt, path)
    with pytest.raises(w2v.errors.UserError, match="attn_type `espnet`"):
        w2v.load_pretrained(path)


def test_fairseq_finetuned_ctc_conformer_gives_the_same_logits(tmp_path):
    """A fairseq ``wav2vec_ctc`` checkpoint around a rotary Conformer (the released
    LL_rope_PT_*_FT shape): the encoder under ``w2v_encoder.w2v_model.``, the CTC layer as
    ``w2v_encoder.proj``, the architecture in ``w2v_args``."""
    hf = hf_conformer(Wav2Vec2ConformerForCTC, "rope")
    inner = torch.load(fairseq_checkpoint(tmp_path, hf, "rope", True), weights_only=False)
    state = {f"w2v_encoder.w2v_model.{k}": v for k, v in inner["model"].items()}
    state.update({"w2v_encoder.proj.weight": hf.lm_head.weight.clone(),
                  "w2v_encoder.proj.bias": hf.lm_head.bias.clone()})
    cfg = {"model": {"_name": "wav2vec_ctc", "w2v_args": inner["cfg"], "final_dropout": 0.1,
                     "dropout": 0.0, "layerdrop": 0.1},
           "task": {"_name": "audio_finetuning", "normalize": False, "labels": "ltr"}}
    path = tmp_path / "finetuned.pt"
    torch.save({"model": state, "cfg": cfg}, path)
    model = w2v.load_pretrained(path)
    assert_same_ctc_logits(model, hf)
    assert model.aggregator.config.layerdrop == 0.1 and model.aggregator.config.dropout == 0.0
