"""wav2vec 2.0 context network: padding, causality, early stopping, LayerDrop, SDPA masks."""

from __future__ import annotations

import pytest
import torch

from w2v.errors import ConfigError, FitError
from w2v.interfaces import Signal
from w2v.plugins.wav2vec2 import attention as attention_module
from w2v.plugins.wav2vec2.transformer import TransformerAggregator, TransformerAggregatorConfig

torch.set_num_threads(1)

FRAMES = Signal(kind="frames", dim=24, stride=320, receptive_field=400, causal=True)


def aggregator(**kw) -> TransformerAggregator:
    torch.manual_seed(0)
    base = dict(embed_dim=32, layers=3, ffn_dim=48, heads=4, conv_pos=8, conv_pos_groups=4,
                dropout=0.0, attention_dropout=0.0)
    cfg = TransformerAggregatorConfig(**{**base, **kw})
    return TransformerAggregator.from_config(cfg, FRAMES).eval()


def count_blocks(agg):
    calls = []
    for layer in agg.layers:
        layer.register_forward_hook(lambda *a: calls.append(1))
    return calls


VARIANTS = [dict(), dict(layer_norm_first=True), dict(layer_type="conformer", conformer_kernel=5),
            dict(pos_conv_depth=2)]


@pytest.mark.parametrize("kw", VARIANTS)
def test_padded_batch_equals_alone(kw):
    agg = aggregator(**kw)
    x = torch.randn(2, 21, 32)
    garbage = x.clone()
    garbage[1, 15:] = 100.0                                      # padding content must not matter
    out = agg(garbage, torch.tensor([21, 15]))
    alone = agg(x[1:, :15])
    torch.testing.assert_close(out.output[1, :15], alone.output[0], atol=1e-5, rtol=0)
    for a, b in zip(out.layers, alone.layers):
        torch.testing.assert_close(a[1, :15], b[0], atol=1e-5, rtol=0)
    assert out.output[1, 15:].abs().max() == 0 and out.layers[0][1, 15:].abs().max() == 0
    torch.testing.assert_close(out.output[0], agg(x[:1]).output[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", VARIANTS)
def test_causal_output_ignores_later_input(kw):
    agg = aggregator(causal=True, **kw)
    x = torch.randn(1, 20, 32)
    y = x.clone()
    y[:, 12:] = torch.randn(1, 8, 32)
    a, b = agg(x), agg(y)
    torch.testing.assert_close(a.output[:, :12], b.output[:, :12], atol=1e-5, rtol=0)
    assert (a.output[:, 12:] - b.output[:, 12:]).abs().max() > 1e-3
    # the same change leaks backwards without `causal` (so the test above can fail)
    leaky = aggregator(**kw)
    assert (leaky(x).output[:, :12] - leaky(y).output[:, :12]).abs().max() > 1e-3


def test_causal_padded_batch_equals_alone():
    agg = aggregator(causal=True)
    x = torch.randn(2, 17, 32)
    out = agg(x, torch.tensor([17, 11]))
    torch.testing.assert_close(out.output[1, :11], agg(x[1:, :11]).output[0], atol=1e-5, rtol=0)


def test_signal_and_fit():
    agg = aggregator()
    s = agg.produces()
    assert (s.kind, s.dim, s.stride, s.causal) == ("frames", 32, 320, False)
    assert agg.input_dim == 32 and agg.num_layers == 3
    assert aggregator(causal=True).produces().causal is True
    grouped = Signal(kind="frames", dim=24, causal=False)       # e.g. a group_norm encoder
    assert TransformerAggregator.from_config(
        TransformerAggregatorConfig(embed_dim=32, heads=4, conv_pos_groups=4, causal=True),
        grouped).produces().causal is False
    with pytest.raises(FitError, match="frame features"):
        TransformerAggregator.from_config(TransformerAggregatorConfig(), Signal(kind="tokens",
                                                                                 dim=10))


def test_layers_argument_stops_early():
    agg = aggregator(layer_norm_first=True)
    calls = count_blocks(agg)
    x = torch.randn(1, 10, 32)
    full = agg(x)
    assert len(calls) == 3 and len(full.layers) == 3
    calls.clear()
    part = agg(x, layers=1)
    assert len(calls) == 2 and len(part.layers) == 2
    torch.testing.assert_close(part.layers[1], full.layers[1])
    torch.testing.assert_close(part.output, full.layers[1])     # no final LayerNorm when cut
    assert (full.output - full.layers[-1]).abs().max() > 1e-3   # pre-LN: final LayerNorm
    calls.clear()
    assert len(agg(x, layers=[0, -3]).layers) == 1 and len(calls) == 1
    torch.testing.assert_close(agg(x, layers=-1).output, full.output)
    with pytest.raises(ConfigError, match="0..2"):
        agg(x, layers=3)


def test_layerdrop_skips_blocks_in_training_only():
    agg = aggregator(layerdrop=1.0)
    calls = count_blocks(agg)
    x = torch.randn(1, 10, 32)
    agg.eval()(x)
    assert len(calls) == 3
    calls.clear()
    out = agg.train()(x)
    assert len(calls) == 0 and len(out.layers) == 3             # skipped blocks repeat the input
    torch.testing.assert_close(out.layers[0], out.layers[2])


def test_seq_len_multiple_padding_does_not_change_results():
    x = torch.randn(2, 13, 32)
    lengths = torch.tensor([13, 9])
    a = aggregator(required_seq_len_multiple=1)(x, lengths)
    b = aggregator(required_seq_len_multiple=8)(x, lengths)
    assert b.output.shape == (2, 13, 32)
    torch.testing.assert_close(a.output, b.output, atol=1e-5, rtol=0)


def test_attention_gets_a_boolean_key_mask_or_none(monkeypatch):
    seen = []
    real = attention_module.F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append((None if attn_mask is None else (attn_mask.dtype, tuple(attn_mask.shape)),
                     kw.get("is_causal")))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    x = torch.randn(2, 12, 32)
    aggregator()(x)
    assert seen and all(m is None for m, _ in seen)
    seen.clear()
    aggregator()(x, torch.tensor([12, 7]))
    assert seen and all(m == (torch.bool, (2, 1, 1, 12)) for m, _ in seen)
    seen.clear()
    aggregator(causal=True)(x, torch.tensor([12, 7]))
    assert seen and all(m is None and c for m, c in seen)


def test_positional_conv_is_weight_normed_over_the_kernel_axis():
    agg = aggregator()
    keys = agg.state_dict()
    g = keys["positional.conv.parametrizations.weight.original0"]
    v = keys["positional.conv.parametrizations.weight.original1"]
    assert tuple(g.shape) == (1, 1, 8) and tuple(v.shape) == (32, 8, 8)


def test_backward_reaches_every_parameter():
    agg = aggregator(layer_type="conformer", conformer_kernel=3).train()
    agg(torch.randn(2, 9, 32), torch.tensor([9, 6])).output.sum().backward()
    assert all(p.grad is not None for p in agg.parameters())


def test_config_checks():
    with pytest.raises(ConfigError, match="heads"):
        TransformerAggregatorConfig(embed_dim=30, heads=4)
    with pytest.raises(ConfigError, match="conv_pos_groups"):
        TransformerAggregatorConfig(embed_dim=32, heads=4, conv_pos_groups=5)
    with pytest.raises(ConfigError, match="odd"):
        TransformerAggregatorConfig(layer_type="conformer", conformer_kernel=4)
