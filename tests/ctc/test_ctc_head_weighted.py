"""``head: {name: ctc, layers: weighted}``: a CTC head over SUPERB's learned weighted sum of
the model's hidden states, built from a recipe, trained frozen, saved and reloaded."""

from __future__ import annotations

import pytest
import torch

from w2v.build import ModelConfig, build_model
from w2v.config.structure import structure
from w2v.data.dictionary import Dictionary

MODEL = {
    "encoder": {"name": "logmel", "num_mel_bins": 20, "frame_shift_ms": 20.0},
    "aggregator": {"name": "transformer", "embed_dim": 16, "layers": 3, "ffn_dim": 32,
                   "heads": 2, "conv_pos": 4, "conv_pos_groups": 2, "dropout": 0.0,
                   "attention_dropout": 0.0, "activation_dropout": 0.0},
}
DICTIONARY = Dictionary.from_symbols(["|", *"ETAONS"])


def build(head: dict, model: dict = MODEL):
    torch.manual_seed(0)
    cfg = structure({**model, "head": head}, ModelConfig)
    return build_model(cfg, dictionary=DICTIONARY).eval(), cfg


def test_weighted_head_reads_the_input_and_every_block():
    from w2v.hidden_states import WeightedLayers

    model, _ = build({"name": "ctc", "layers": "weighted"})
    assert model.hidden_state_names() == ["input", "0", "1", "2"]
    assert isinstance(model.head.layer_weights, WeightedLayers)
    with torch.no_grad():
        model.head.layer_weights.weights.copy_(torch.tensor([0.0, -1.0, 2.0, 0.5]))
        wave = torch.randn(2, 8000)
        out = model(wave, torch.tensor([8000, 5000]))
        feats = model.extract_features(wave, torch.tensor([8000, 5000]))
    w = torch.tensor([0.0, -1.0, 2.0, 0.5]).softmax(0)
    mixed = w[0] * model.projection(feats.local) + sum(w[k + 1] * feats.layers[k]
                                                       for k in range(3))
    expected = model.head.proj(mixed)
    valid = out.lengths
    for b in range(2):
        n = int(valid[b])
        assert torch.allclose(out.logits[b, :n], expected[b, :n], atol=1e-5)
    # the last-layer head reads the context (final output), not the block stack
    last, _ = build({"name": "ctc"})
    assert last.head.layer_weights is None and not last.head.reads_hidden_states


def test_an_encoder_only_model_has_one_hidden_state():
    model, _ = build({"name": "ctc", "layers": "weighted"}, {"encoder": MODEL["encoder"]})
    assert model.hidden_state_names() == ["encoder"]
    out = model(torch.randn(1, 4000))
    assert out.logits.shape[-1] == len(DICTIONARY)
    assert model.head.layer_weights.normalized().tolist() == [1.0]


def test_frozen_model_trains_only_the_head_and_its_layer_weights(tmp_path):
    from w2v.checkpoint_formats import save_model
    from w2v import load_pretrained

    model, cfg = build({"name": "ctc", "layers": "weighted", "lstm_layers": 1, "lstm_dim": 8})
    for name in ("encoder", "projection", "aggregator"):
        getattr(model, name).requires_grad_(False)
    out = model(torch.randn(2, 8000))
    out.logits.logsumexp(-1).sum().backward()
    grad = model.head.layer_weights.weights.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in model.aggregator.parameters())
    with torch.no_grad():
        model.head.layer_weights.weights.copy_(torch.tensor([3.0, 0.0, 0.0, -3.0]))
    save_model(model, cfg, tmp_path / "model.pt", dictionary=DICTIONARY)
    loaded = load_pretrained(tmp_path / "model.pt").eval()
    assert loaded.head.reads_hidden_states
    assert torch.equal(loaded.head.layer_weights.weights, model.head.layer_weights.weights)
    wave = torch.randn(1, 6000)
    with torch.no_grad():
        assert torch.allclose(loaded(wave).logits, model(wave).logits, atol=1e-6)


def test_the_benchmark_probe_is_the_same_head():
    from w2v.plugins.benchmark.probes import CTCProbe
    from w2v.plugins.ctc.head import CTCHead

    probe = CTCProbe(4, 16, 7, blank=0, lstm_layers=0, lstm_dim=8)
    assert type(probe.head) is CTCHead and probe.head.reads_hidden_states
    assert probe.layers is probe.head.layer_weights


def test_unknown_layers_choice_names_the_valid_ones():
    from w2v.errors import ConfigError

    with pytest.raises(ConfigError, match="weighted"):
        build({"name": "ctc", "layers": "weigthed"})
