"""wav2vec 2.0 conv feature encoder: signal arithmetic, padding behaviour, penalty, gradients."""

from __future__ import annotations

import pytest
import torch

from w2v.errors import ConfigError, DataError, FitError
from w2v.interfaces import Signal, waveform_signal
from w2v.plugins.wav2vec2.feature_encoder import (Wav2Vec2FeatureEncoder,
                                                   Wav2Vec2FeatureEncoderConfig)

torch.set_num_threads(1)

SMALL = [(16, 10, 5), (16, 3, 2), (24, 2, 2)]          # stride 20, receptive field 30


def encoder(mode="layer_norm", **kw) -> Wav2Vec2FeatureEncoder:
    torch.manual_seed(0)
    cfg = Wav2Vec2FeatureEncoderConfig(conv_layers=SMALL, mode=mode, **kw)
    return Wav2Vec2FeatureEncoder.from_config(cfg, waveform_signal()).eval()


def test_default_signal_is_wav2vec2s_20ms_frames():
    enc = Wav2Vec2FeatureEncoder.from_config(Wav2Vec2FeatureEncoderConfig(), waveform_signal())
    s = enc.produces()
    assert (s.kind, s.dim, s.stride, s.receptive_field) == ("frames", 512, 320, 400)
    assert s.frame_rate == 50.0
    assert s.causal is False                                   # GroupNorm over time
    enc_ln = Wav2Vec2FeatureEncoder.from_config(
        Wav2Vec2FeatureEncoderConfig(mode="layer_norm"), waveform_signal())
    assert enc_ln.produces().causal is True                    # per-frame norms, valid convs


@pytest.mark.parametrize("n", [30, 31, 49, 50, 51, 1000, 1017])
def test_output_lengths_match_the_conv_arithmetic(n):
    enc = encoder()
    out = enc(torch.randn(1, n))
    assert out.features.shape[1] == int(enc.output_lengths(torch.tensor([n]))[0])
    t = n
    for _, k, s in SMALL:                                      # HF _get_feat_extract_output_lengths
        t = (t - k) // s + 1
    assert out.features.shape[1] == max(t, 0)


def test_audio_shorter_than_the_receptive_field_is_a_data_error():
    with pytest.raises(DataError, match="receptive field"):
        encoder()(torch.randn(1, 29))


def test_layer_norm_mode_padded_batch_equals_alone():
    enc = encoder("layer_norm")
    a, b = torch.randn(1, 1600), torch.randn(1, 1100)
    padded = torch.cat([a, torch.cat([b, 5 * torch.randn(1, 500)], 1)])   # garbage padding
    out = enc(padded, torch.tensor([1600, 1100]))
    alone = enc(b)
    t = alone.features.shape[1]
    assert int(out.lengths[1]) == t
    torch.testing.assert_close(out.features[1, :t], alone.features[0], atol=1e-5, rtol=0)
    assert out.features[1, t:].abs().max() == 0                # padded frames hold zeros


def test_group_norm_mode_statistics_include_the_padding():
    """Documented: with group_norm, an utterance's valid frames in a padded batch equal that
    utterance zero-padded to the batch length and run alone, not the utterance alone."""
    enc = encoder("group_norm")
    a, b = torch.randn(1, 1600), torch.randn(1, 1100)
    padded = torch.cat([a, torch.cat([b, 5 * torch.randn(1, 500)], 1)])
    out = enc(padded, torch.tensor([1600, 1100]))
    alone = enc(b)
    t = alone.features.shape[1]
    zero_padded_alone = enc(torch.cat([b, torch.zeros(1, 500)], 1))
    torch.testing.assert_close(out.features[1, :t], zero_padded_alone.features[0, :t],
                               atol=1e-5, rtol=0)
    assert (out.features[1, :t] - alone.features[0]).abs().max() > 1e-3


def test_group_norm_exclude_padding_matches_alone():
    enc = encoder("group_norm", group_norm_padding="exclude")
    a, b = torch.randn(1, 1600), torch.randn(1, 1100)
    padded = torch.cat([a, torch.cat([b, torch.randn(1, 500)], 1)])
    out = enc(padded, torch.tensor([1600, 1100]))
    alone = enc(b)
    t = alone.features.shape[1]
    torch.testing.assert_close(out.features[1, :t], alone.features[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.features[0], enc(a).features[0], atol=1e-5, rtol=0)


def _conv_output(enc, x):
    h = x.unsqueeze(1)
    for block in enc.conv_layers:
        h = block(h)
    return h.transpose(1, 2)


@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_penalty_is_mean_square_of_conv_output_before_the_layer_norm(mode):
    enc = encoder(mode)
    x = torch.randn(2, 900)
    out = enc(x)
    conv = _conv_output(enc, x)
    torch.testing.assert_close(out.penalty, conv.pow(2).mean())
    torch.testing.assert_close(out.features, enc.layer_norm(conv))
    assert out.penalty.dtype == torch.float32


def test_penalty_counts_valid_frames_only():
    enc = encoder("layer_norm")
    x = torch.randn(2, 900)
    lengths = torch.tensor([900, 500])
    out = enc(x, lengths)
    t1 = int(out.lengths[1])
    conv0, conv1 = _conv_output(enc, x[:1]), _conv_output(enc, x[1:, :500])
    expected = torch.cat([conv0[0], conv1[0, :t1]]).pow(2).mean()
    torch.testing.assert_close(out.penalty, expected)


def test_feature_grad_mult_scales_conv_gradients_only():
    x = torch.randn(2, 600)

    def grads(mult):
        enc = encoder("layer_norm", feature_grad_mult=mult)
        enc(x).features.pow(2).sum().backward()
        return enc.conv_layers[0].conv.weight.grad, enc.layer_norm.weight.grad

    conv1, ln1 = grads(1.0)
    conv01, ln01 = grads(0.1)
    torch.testing.assert_close(conv01, 0.1 * conv1)
    torch.testing.assert_close(ln01, ln1)
    conv0, ln0 = grads(0.0)
    assert conv0 is None and ln0 is not None


def test_bad_configs_are_config_errors():
    with pytest.raises(ConfigError, match="conv_layers.1"):
        Wav2Vec2FeatureEncoderConfig(conv_layers=[(16, 10, 5), (16, 0, 2)])
    with pytest.raises(ConfigError, match="channels, kernel, stride"):
        Wav2Vec2FeatureEncoderConfig(conv_layers=[(16, 10)])
    with pytest.raises(FitError, match="waveform"):
        Wav2Vec2FeatureEncoder.from_config(Wav2Vec2FeatureEncoderConfig(),
                                           Signal(kind="tokens", dim=100))


def test_wrong_input_rank_is_rejected():
    with pytest.raises(ValueError, match=r"\[B, S\]"):
        encoder()(torch.randn(2, 1, 900))
