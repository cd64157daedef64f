"""wav2vec 1.0 conv encoder and causal conv / GRU aggregators."""

import math

import pytest
import torch

from w2v.config.structure import structure_component
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Encoder, Signal, waveform_signal
from w2v.plugins.wav2vec.aggregator import ConvAggregator
from w2v.plugins.wav2vec.encoder import Wav2VecConvEncoder
from w2v.plugins.wav2vec.gru import GRUAggregator
from w2v.plugins.wav2vec.layers import (AGGREGATOR_BASE, AGGREGATOR_LARGE, ENCODER_BASE,
                                        ENCODER_LARGE, ENCODER_VQ)

torch.set_num_threads(1)

TINY_ENC = [(4, 4, 2), (4, 3, 2)]          # receptive field 4 + 2*2 = 8 samples, stride 4
TINY_AGG = [(4, 3, 1), (6, 2, 1)]


def tiny_stack(norm, seed=0):
    torch.manual_seed(seed)
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC, norm=norm))
    agg = ConvAggregator(ConvAggregator.Config(layers=TINY_AGG, norm=norm), 4,
                         upstream=enc.produces())
    return enc.eval(), agg.eval()


def run(enc, agg, wave):
    z = enc(wave).features
    return z, agg(z).output


# ------------------------------------------------------------------ signals


@pytest.mark.parametrize("layers, n", [(ENCODER_BASE, 5), (ENCODER_LARGE, 7), (ENCODER_VQ, 8)])
def test_presets_stride_and_receptive_field(layers, n):
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=layers))
    sig = enc.produces()
    assert len(enc.blocks) == n
    assert (sig.kind, sig.dim, sig.stride, sig.receptive_field) == ("frames", 512, 160, 465)
    assert sig.frame_rate == 100


@pytest.mark.parametrize("norm, causal", [("group", False), ("frame", True), ("none", True)])
def test_encoder_causality_flag_follows_norm(norm, causal):
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC, norm=norm))
    assert enc.produces().causal is causal


def test_aggregator_receptive_fields_match_the_paper():
    z = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=ENCODER_BASE)).produces()
    base = ConvAggregator(ConvAggregator.Config(layers=AGGREGATOR_BASE), 512, upstream=z).produces()
    large = ConvAggregator(ConvAggregator.Config(layers=AGGREGATOR_LARGE), 512,
                           upstream=z).produces()
    assert round(1000 * base.receptive_field / 16000) == 209   # paper: 210 ms
    assert round(1000 * large.receptive_field / 16000) == 809  # paper: 810 ms
    assert base.stride == large.stride == 160


def test_aggregator_produces_is_causal_only_without_group_norm_anywhere():
    def agg(norm, upstream):
        return ConvAggregator(ConvAggregator.Config(layers=TINY_AGG, norm=norm), 4, upstream)

    def enc(norm):
        return Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC, norm=norm))

    frame_enc = enc("frame").produces()
    assert agg("frame", frame_enc).produces().causal
    assert not agg("group", frame_enc).produces().causal
    group_enc = enc("group").produces()
    none_agg = agg("none", group_enc)
    assert not none_agg.produces().causal and none_agg.structurally_causal


@pytest.mark.parametrize("layers", [ENCODER_BASE, TINY_ENC])
def test_output_lengths_match_real_frame_counts(layers):
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=layers)).eval()
    for n in [0, 7, 8, 465, 466, 624, 625, 1000, 1601]:
        frames = enc(torch.randn(1, n)).features.shape[1]
        assert int(enc.output_lengths(torch.tensor([n]))) == frames
        # the interface's closed form agrees with the layer-by-layer count
        assert int(Encoder.output_lengths(enc, torch.tensor([n]))) == frames


# ---------------------------------------------------------------- causality


@pytest.mark.parametrize("norm", ["none", "frame"])
def test_structure_is_causal_without_utterance_norm(norm):
    """Perturb the input from sample s on: frames whose receptive field ends at or before s
    (t*4 + 8 <= s) keep their values in z and in the context c; later frames change."""
    enc, agg = tiny_stack(norm)
    wave = torch.randn(1, 200)
    s = 100
    bumped = wave.clone()
    bumped[:, s:] += torch.randn(1, 200 - s)
    (z0, c0), (z1, c1) = run(enc, agg, wave), run(enc, agg, bumped)
    unaffected = (s - 8) // 4 + 1                                       # frames 0..23
    assert torch.equal(z0[:, :unaffected], z1[:, :unaffected])
    assert torch.equal(c0[:, :unaffected], c1[:, :unaffected])
    assert not torch.allclose(z0[:, unaffected:], z1[:, unaffected:])
    assert not torch.allclose(c0[:, unaffected:], c1[:, unaffected:])


def test_group_norm_leaks_the_future():
    """fairseq parity: GroupNorm(1, C) normalises over time, so a change after sample s moves
    every frame, including those whose receptive field ends before s."""
    enc, agg = tiny_stack("group")
    wave = torch.randn(1, 200)
    bumped = wave.clone()
    bumped[:, 100:] *= 3.0
    (z0, c0), (z1, c1) = run(enc, agg, wave), run(enc, agg, bumped)
    assert not torch.allclose(z0[:, :23], z1[:, :23], atol=1e-4)
    assert not torch.allclose(c0[:, :23], c1[:, :23], atol=1e-4)


def test_gru_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    gru = GRUAggregator(GRUAggregator.Config(dim=5, num_layers=2), 3).eval()
    x = torch.randn(2, 10, 3)
    y = gru(x).output
    bumped = x.clone()
    bumped[:, 6:] += 1.0
    y1 = gru(bumped).output
    assert torch.allclose(y[:, :6], y1[:, :6]) and not torch.allclose(y[:, 6:], y1[:, 6:])
    padded = torch.cat([x[:1, :7], torch.zeros(1, 3, 3)], dim=1)
    out = gru(padded, torch.tensor([7])).output
    assert torch.allclose(out[:, :7], y[:1, :7], atol=1e-6)
    assert torch.count_nonzero(out[:, 7:]) == 0


# ------------------------------------------------------- padding and numerics


def test_replication_vs_zero_padding():
    """The first frames see the causal padding: replicated frame 0 or zeros. Frames from
    sum(k - 1) = 3 on never reach the padding, so both variants agree there."""
    torch.manual_seed(0)
    rep = ConvAggregator(ConvAggregator.Config(layers=TINY_AGG, norm="none", zero_pad=False), 4)
    zero = ConvAggregator(ConvAggregator.Config(layers=TINY_AGG, norm="none", zero_pad=True), 4)
    zero.load_state_dict(rep.state_dict())
    x = torch.rand(1, 12, 4) + 0.5
    a, b = rep(x).output, zero(x).output
    assert not torch.allclose(a[:, :3], b[:, :3])
    assert torch.allclose(a[:, 3:], b[:, 3:], atol=1e-6)
    # replication equals explicitly repeating frame 0 in front of a zero-pad-free input
    lead = torch.cat([x[:, :1].expand(1, 3, 4), x], dim=1)
    assert torch.allclose(zero(lead).output[:, 3:], a, atol=1e-6)


def test_aggregator_skip_connections_by_hand():
    """Two blocks, widths 1 -> 1 -> 2, no norm, ReLU, no bias, residual_scale 0.5:
    h1 = (relu(0.5 x[t-1] + x[t]) + x) s;  h2 = (relu([1, -1] h1) + [2, 1] h1) s, s = sqrt(.5).
    x = (1, -2, 3) with x[-1] = x[0] (replication):
    relu(.) = (1.5, 0, 2)  ->  h1 = (2.5, -2, 5) s
    channel 0: (relu(h1) + 2 h1) s = (3.75, -2, 7.5); channel 1: (relu(-h1) + h1) s = (1.25, 0, 2.5)
    """
    agg = ConvAggregator(ConvAggregator.Config(layers=[(1, 2, 1), (2, 1, 1)], norm="none",
                                               conv_bias=False, skip_connections=True,
                                               residual_scale=0.5), 1)
    with torch.no_grad():
        agg.blocks[0].conv.weight.copy_(torch.tensor([[[0.5, 1.0]]]))
        agg.blocks[1].conv.weight.copy_(torch.tensor([[[1.0]], [[-1.0]]]))
        agg.residual_proj[1].weight.copy_(torch.tensor([[[2.0]], [[1.0]]]))
    assert isinstance(agg.residual_proj[0], torch.nn.Identity)  # same width: no projection
    out = agg(torch.tensor([[[1.0], [-2.0], [3.0]]]))
    expected = torch.tensor([[[3.75, 1.25], [-2.0, 0.0], [7.5, 2.5]]])
    assert torch.allclose(out.output, expected, atol=1e-6)
    assert torch.allclose(out.layers[0][0, :, 0], torch.tensor([2.5, -2.0, 5.0]) / math.sqrt(2))


def test_encoder_skip_connection_by_hand():
    """One block 1 -> 1 channel, kernel 2, stride 2, weight (1, 1), no norm, no log:
    y = relu(x[2t] + x[2t+1]) = (3, 0, 0); residual x[2t] = (1, -3, 4); out = (4, -3, 4)/sqrt 2."""
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=[(1, 2, 2)], norm="none",
                                                       log_compression=False,
                                                       skip_connections=True))
    with torch.no_grad():
        enc.blocks[0].conv.weight.fill_(1.0)
    out = enc(torch.tensor([[1.0, 2.0, -3.0, 1.0, 4.0, -6.0]])).features[0, :, 0]
    assert torch.allclose(out, torch.tensor([4.0, -3.0, 4.0]) / math.sqrt(2))


def test_log_compression():
    torch.manual_seed(0)
    plain = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC, log_compression=False))
    logged = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC, log_compression=True))
    logged.load_state_dict(plain.state_dict())
    wave = torch.randn(1, 64)
    assert torch.allclose(logged(wave).features, torch.log(plain(wave).features.abs() + 1))


@pytest.mark.parametrize("norm", ["group", "frame", "none"])
def test_padded_batch_matches_single_utterances(norm):
    enc, agg = tiny_stack(norm)
    short, long_ = torch.randn(1, 120), torch.randn(1, 200)
    batch = torch.zeros(2, 200)
    batch[0, :120], batch[1] = short, long_
    enc_out = enc(batch, torch.tensor([120, 200]))
    c = agg(enc_out.features, enc_out.lengths).output
    z_short, c_short = run(enc, agg, short)
    n = z_short.shape[1]
    assert enc_out.lengths.tolist() == [n, run(enc, agg, long_)[0].shape[1]]
    assert torch.allclose(enc_out.features[0, :n], z_short[0], atol=1e-5)
    assert torch.allclose(c[0, :n], c_short[0], atol=1e-5)
    assert torch.count_nonzero(enc_out.features[0, n:]) == 0
    assert torch.count_nonzero(c[0, n:]) == 0


def test_layers_argument_stops_early():
    enc, agg = tiny_stack("none")
    z = enc(torch.randn(1, 100)).features
    full = agg(z)
    first = agg(z, layers=0)
    assert len(full.layers) == 2 and len(first.layers) == 1
    assert torch.allclose(first.output, full.layers[0])
    with pytest.raises(IndexError):
        agg(z, layers=5)


# ------------------------------------------------------------------- configs


def test_built_from_yaml_sections_with_derived_widths():
    enc = structure_component("encoder", {"name": "wav2vec_conv", "preset": "large",
                                          "norm": "frame"}).build(waveform_signal())
    assert len(enc.blocks) == 7 and enc.produces().causal
    agg = structure_component("aggregator", {"name": "wav2vec_conv_aggregator",
                                             "layers": [[16, 3, 1], [8, 2, 1]]}
                              ).build(Signal(kind="frames", dim=24))
    assert agg.input_dim == 24 and agg.produces().dim == 8
    gru = structure_component("aggregator", {"name": "gru", "dim": 6}).build(enc.produces())
    assert gru.input_dim == 512 and gru.produces().dim == 6


@pytest.mark.parametrize("section, key", [
    ({"name": "wav2vec_conv", "preset": "base", "layers": [[8, 2, 1]]}, "layers"),
    ({"name": "wav2vec_conv", "layers": [[8, 2]]}, "layers.0"),
    ({"name": "wav2vec_conv", "layers": [[0, 2, 1]]}, "layers.0"),
    ({"name": "wav2vec_conv", "norm": "batch"}, "norm"),
])
def test_encoder_config_errors_name_the_key(section, key):
    with pytest.raises(ConfigError) as info:
        structure_component("encoder", section, path="model.encoder")
    assert f"model.encoder.{key}" in str(info.value)


def test_aggregator_rejects_strided_layers():
    with pytest.raises(ConfigError, match="stride 1 only"):
        structure_component("aggregator", {"name": "wav2vec_conv_aggregator",
                                           "layers": [[8, 3, 2]]})


def test_encoder_rejects_non_waveform_input():
    with pytest.raises(FitError, match="raw audio"):
        structure_component("encoder", {"name": "wav2vec_conv"}).build(
            Signal(kind="frames", dim=80))


@pytest.mark.slow       # inductor compiles C++ on the CPU
def test_compiled_encoder_trains_in_bf16_with_finite_gradients():
    # trainer.compile with the wav2vec_base recipe (bf16 on CPU) diverged at its first update:
    # inductor's code for a conv block and the log compression in one graph gave NaN
    # gradients. The blocks are the compile regions; the log compression stays eager
    from torch import nn

    from w2v.train.compiling import compile_model

    torch._dynamo.reset()
    torch.manual_seed(0)
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=[(64, 10, 5), (64, 8, 4)],
                                                      norm="group", log_compression=True))
    wave = torch.randn(2, 32000) * 0.3

    def grads():
        enc.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z = enc(wave).features.float()
        (z * torch.linspace(-1, 1, z.numel()).view(z.shape)).sum().backward()
        return [p.grad.clone() for p in enc.parameters()]

    eager = grads()
    warnings: list[str] = []
    regions = compile_model(nn.ModuleDict({"encoder": enc}), warnings.append, names=("encoder",))
    assert regions.names == ["encoder (2 blocks)"] and warnings == []
    for got, want in zip(grads(), eager):
        assert got.isfinite().all()
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.05 * float(want.abs().max()))
    torch._dynamo.reset()
