"""Hugging Face interop: random-init transformers models imported into w2v (and exported back)
give the same features."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from w2v.errors import UserError
from w2v.plugins.wav2vec2.interop import detect_hf, from_hf, load_hf, to_hf
from w2v.plugins.wav2vec2.transformer import TransformerAggregatorConfig

transformers = pytest.importorskip("transformers")
from transformers import (Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining,  # noqa: E402
                          Wav2Vec2Model)

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)
TOL = dict(atol=1e-4, rtol=0)


def hf_config(large: bool, **kw) -> Wav2Vec2Config:
    """BASE shape (post-LN, group norm) or LARGE shape (pre-LN, layer norm, conv bias), tiny."""
    return Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=[16, 16, 24], conv_kernel=[10, 3, 2], conv_stride=[5, 2, 2],
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer" if large else "group", do_stable_layer_norm=large,
        conv_bias=large, codevector_dim=16, proj_codevector_dim=12, num_codevectors_per_group=10,
        num_codevector_groups=2, vocab_size=7, **kw)


def make(cls, large: bool, **kw):
    torch.manual_seed(0)
    model = cls(hf_config(large, **kw)).eval()
    with torch.no_grad():                      # non-trivial norms and biases
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def base_of(model):
    return getattr(model, "wav2vec2", model)


def assert_same_features(hf, w2v, wave, lengths=None, large=False):
    mask = None
    if lengths is not None:
        mask = (torch.arange(wave.shape[1])[None] < lengths[:, None]).long()
    with torch.no_grad():
        ref = base_of(hf)(wave, attention_mask=mask, output_hidden_states=True)
        ours = w2v.extract_features(wave, lengths)
    frames = ours.local.shape[1] if lengths is None else int(ours.lengths.min())
    sl = (slice(None), slice(0, frames))
    torch.testing.assert_close(ours.local[sl], ref.extract_features[sl], **TOL)
    n = len(ours.layers)
    assert n == len(ref.hidden_states) - 1
    for i, layer in enumerate(ours.layers):
        if large and i == n - 1:
            continue                           # HF applies the final LayerNorm to its last entry
        torch.testing.assert_close(layer[sl], ref.hidden_states[i + 1][sl], **TOL)
    torch.testing.assert_close(ours.output[sl], ref.last_hidden_state[sl], **TOL)
    if large:
        torch.testing.assert_close(w2v.aggregator.layer_norm(ours.layers[-1])[sl],
                                   ref.hidden_states[-1][sl], **TOL)


@pytest.mark.parametrize("large", [False, True], ids=["base", "large"])
def test_pretraining_model_gives_the_same_features(large):
    hf = make(Wav2Vec2ForPreTraining, large)
    model = from_hf((hf.config, hf.state_dict()))
    assert not model.training
    assert model.aggregator.config.layer_norm_first is large
    assert model.encoder.mode == ("layer_norm" if large else "group_norm")
    assert_same_features(hf, model, torch.randn(2, 1600), large=large)
    report = model.load_report
    assert not report.missing and not report.dropped
    torch.testing.assert_close(report.objective_state["final_proj.weight"], hf.project_hid.weight)
    torch.testing.assert_close(report.objective_state["project_q.weight"], hf.project_q.weight)
    assert report.objective_config["final_dim"] == 12


def test_large_model_padded_batch_matches_hf_attention_mask():
    hf = make(Wav2Vec2ForPreTraining, True)
    model = from_hf((hf.config, hf.state_dict()))
    wave = torch.randn(2, 1600)
    lengths = torch.tensor([1600, 1100])
    assert_same_features(hf, model, wave, lengths, large=True)
    with torch.no_grad():
        alone = model.extract_features(wave[1:, :1100]).output
        batched = model.extract_features(wave, lengths).output
    torch.testing.assert_close(batched[1, :alone.shape[1]], alone[0], atol=1e-5, rtol=0)


def test_quantizer_and_mask_embedding_are_mapped():
    hf = make(Wav2Vec2ForPreTraining, False)
    model = from_hf((hf.config, hf.state_dict()))
    torch.testing.assert_close(model.masker.mask_emb, hf.wav2vec2.masked_spec_embed)
    wave = torch.randn(1, 1600)
    with torch.no_grad():
        local = model.extract_features(wave).local
        ref_vectors, _ = hf.quantizer(local)                   # eval: argmax code vectors
        ours = model.quantizer.eval()(local).vectors
    torch.testing.assert_close(ours, ref_vectors, **TOL)
    assert model.quantize(wave).shape == (1, local.shape[1], 2)


def test_ctc_model_head_gives_the_same_logits():
    hf = make(Wav2Vec2ForCTC, True)
    model = from_hf((hf.config, hf.state_dict()))
    wave = torch.randn(2, 1600)
    with torch.no_grad():
        ref = hf(wave).logits
        ours = model.head(model.extract_features(wave).output)
    torch.testing.assert_close(ours, ref, **TOL)
    assert model.quantizer is None and model.head.proj.out_features == 7


def test_bare_model_without_prefix_and_without_mask_embedding():
    hf = make(Wav2Vec2Model, False, mask_time_prob=0.0)
    state = hf.state_dict()
    assert not any(k.startswith("wav2vec2.") for k in state)
    model = from_hf((hf.config, state))
    assert model.masker is None and model.quantizer is None and model.head is None
    assert_same_features(hf, model, torch.randn(1, 1200))


@pytest.mark.parametrize("spelling", ["parametrizations", "weight_g_v", "plain_weight"])
def test_weight_norm_spellings(spelling):
    hf = make(Wav2Vec2ForPreTraining, False)
    state = dict(hf.state_dict())
    prefix = "wav2vec2.encoder.pos_conv_embed.conv."
    g = state.pop(prefix + "parametrizations.weight.original0")
    v = state.pop(prefix + "parametrizations.weight.original1")
    if spelling == "parametrizations":
        state[prefix + "parametrizations.weight.original0"] = g
        state[prefix + "parametrizations.weight.original1"] = v
    elif spelling == "weight_g_v":
        state[prefix + "weight_g"], state[prefix + "weight_v"] = g, v
    else:
        state[prefix + "weight"] = torch._weight_norm(v, g, 2)
    model = from_hf((hf.config, state))
    assert_same_features(hf, model, torch.randn(1, 1200))


def test_unexpected_and_incomplete_keys_raise():
    hf = make(Wav2Vec2ForPreTraining, False)
    state = dict(hf.state_dict())
    with pytest.raises(UserError, match="wav2vec2.encoder.layers.0.attention.rel_bias"):
        from_hf((hf.config, {**state, "wav2vec2.encoder.layers.0.attention.rel_bias":
                             torch.zeros(3)}))
    del state["wav2vec2.encoder.layers.1.attention.k_proj.weight"]
    with pytest.raises(UserError, match="k_proj"):
        from_hf((hf.config, state))
    bad = dict(hf.state_dict())
    bad["wav2vec2.encoder.layers.0.feed_forward.output_dense.weight"] = torch.zeros(5, 5)
    with pytest.raises(UserError, match=r"output_dense.weight` has shape \[5, 5\]"):
        from_hf((hf.config, bad))


def test_unsupported_configs_raise():
    hf = make(Wav2Vec2Model, False)
    cfg = hf.config.to_dict()
    with pytest.raises(UserError, match="hidden_act"):
        from_hf(({**cfg, "hidden_act": "relu"}, hf.state_dict()))
    with pytest.raises(UserError, match="model_type"):
        from_hf(({**cfg, "model_type": "hubert"}, hf.state_dict()))


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_directory_with_preprocessor_config(tmp_path, safe):
    hf = make(Wav2Vec2ForPreTraining, True)
    hf.save_pretrained(tmp_path, safe_serialization=safe)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "sampling_rate": 16000, "feature_size": 1}))
    assert detect_hf(tmp_path) and not detect_hf(tmp_path / "config.json")
    model = load_hf(tmp_path)
    assert model.normalize is True
    wave = torch.randn(1, 1600)
    normed = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        ref = hf.wav2vec2(normed).last_hidden_state
        ours = model.extract_features(wave).output
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=0)


# ------------------------------------------------------------------------------- export


def reload(directory, cls):
    model, info = cls.from_pretrained(directory, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


@pytest.mark.parametrize("large", [False, True], ids=["base", "large"])
def test_export_round_trip_pretraining(tmp_path, large):
    hf = make(Wav2Vec2ForPreTraining, large)
    model = from_hf((hf.config, hf.state_dict()))
    to_hf(model, tmp_path, objective_state=model.load_report.objective_state)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == \
        ["Wav2Vec2ForPreTraining"]
    back = reload(tmp_path, Wav2Vec2ForPreTraining)
    assert_same_features(back, model, torch.randn(2, 1600), large=large)
    torch.testing.assert_close(back.quantizer.codevectors, model.quantizer.codevectors)
    torch.testing.assert_close(back.project_hid.weight, hf.project_hid.weight)


def test_export_ctc_and_reimport(tmp_path):
    hf = make(Wav2Vec2ForCTC, False)
    model = from_hf((hf.config, hf.state_dict()))
    to_hf(model, tmp_path)
    back = reload(tmp_path, Wav2Vec2ForCTC)
    wave = torch.randn(1, 1600)
    with torch.no_grad():
        torch.testing.assert_close(back(wave).logits, hf(wave).logits, **TOL)
    again = from_hf(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(again.head(again.extract_features(wave).output),
                                   hf(wave).logits, **TOL)


def test_export_model_without_projection_writes_identity(tmp_path):
    from w2v.plugins.wav2vec2.interop.build import Wav2Vec2Spec, build_model
    from w2v.plugins.wav2vec2.feature_encoder import Wav2Vec2FeatureEncoderConfig

    torch.manual_seed(0)
    spec = Wav2Vec2Spec(
        encoder=Wav2Vec2FeatureEncoderConfig(conv_layers=[(32, 10, 5), (32, 3, 2)],
                                             mode="layer_norm"),
        aggregator=TransformerAggregatorConfig(embed_dim=32, layers=1, ffn_dim=48, heads=4,
                                               conv_pos=4, conv_pos_groups=4))
    model = build_model(spec).eval()
    assert isinstance(model.projection, torch.nn.Identity)
    to_hf(model, tmp_path)
    back = reload(tmp_path, Wav2Vec2Model)
    assert_same_features(back, model, torch.randn(1, 800))


def test_export_refuses_what_hf_cannot_express(tmp_path):
    from w2v.plugins.wav2vec2.interop.build import Wav2Vec2Spec, build_model
    from w2v.plugins.wav2vec2.feature_encoder import Wav2Vec2FeatureEncoderConfig

    for kw, what in [({"causal": True}, "causal"), ({"layer_type": "conformer",
                                                      "conformer_kernel": 3}, "Conformer")]:
        spec = Wav2Vec2Spec(
            encoder=Wav2Vec2FeatureEncoderConfig(conv_layers=[(16, 10, 5)]),
            aggregator=TransformerAggregatorConfig(embed_dim=32, layers=1, ffn_dim=48, heads=4,
                                                   conv_pos=4, conv_pos_groups=4, **kw))
        with pytest.raises(UserError, match=what):
            to_hf(build_model(spec), tmp_path)
