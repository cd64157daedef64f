"""The conv feature encoder's CPU path ([B, C, 1, T] channels-last: oneDNN convolutions in
bf16, row_conv's matrix products otherwise) computes the plain path's function."""

from __future__ import annotations

import pytest
import torch

from w2v.interfaces import waveform_signal
from w2v.plugins.wav2vec2 import feature_encoder
from w2v.plugins.wav2vec2.feature_encoder import (Wav2Vec2FeatureEncoder,
                                                   Wav2Vec2FeatureEncoderConfig,
                                                   computes_in_bf16, runs_channels_last)

torch.set_num_threads(1)

SMALL = [(16, 10, 5), (16, 3, 2), (24, 2, 2)]


def encoder(**kw) -> Wav2Vec2FeatureEncoder:
    torch.manual_seed(0)
    cfg = Wav2Vec2FeatureEncoderConfig(conv_layers=SMALL, feature_grad_mult=0.1, **kw)
    return Wav2Vec2FeatureEncoder.from_config(cfg, waveform_signal()).train()


def test_cpu_runs_channels_last_and_the_convolution_follows_the_dtype():
    x = torch.randn(2, 1, 400)
    assert runs_channels_last(x) and not runs_channels_last(x.to("meta"))
    assert not computes_in_bf16(x)
    assert computes_in_bf16(x.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert computes_in_bf16(x)
    with torch.autocast("cpu", dtype=torch.float16):
        assert not computes_in_bf16(x)


def features_and_grads(enc, wave, lengths, channels_last, monkeypatch):
    monkeypatch.setattr(feature_encoder, "runs_channels_last", lambda x: channels_last)
    enc.zero_grad(set_to_none=True)
    out = enc(wave, lengths)
    probe = torch.randn(out.features.shape, generator=torch.Generator().manual_seed(1))
    ((out.features * probe).sum() + out.penalty).backward()
    grads = {n: p.grad.clone() for n, p in enc.named_parameters()}
    return out, grads


@pytest.mark.parametrize("kw", [dict(mode="group_norm"),
                                dict(mode="group_norm", group_norm_padding="exclude"),
                                dict(mode="layer_norm", conv_bias=True)],
                         ids=["group-norm", "group-norm-exclude", "layer-norm-bias"])
@pytest.mark.parametrize("conv", ["row_conv", "onednn"])
def test_channels_last_path_equals_the_plain_path_in_fp32(kw, conv, monkeypatch):
    """fp32 both ways: row_conv's products, and oneDNN's channels-last convolution (the
    bf16 path's kernel, run here in fp32 so that the comparison is exact)."""
    monkeypatch.setattr(feature_encoder, "computes_in_bf16", lambda x: conv == "onednn")
    enc = encoder(**kw)
    wave = torch.randn(3, 1037)
    lengths = torch.tensor([1037, 800, 431])
    plain, plain_grads = features_and_grads(enc, wave, lengths, False, monkeypatch)
    seen = []
    enc.conv_layers[1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    last, last_grads = features_and_grads(enc, wave, lengths, True, monkeypatch)
    x = seen[0]                          # block 1's input: [B, C, 1, T] in channels-last memory
    assert x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(last.lengths, plain.lengths)
    torch.testing.assert_close(last.features, plain.features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last.penalty, plain.penalty, rtol=1e-5, atol=0)
    assert plain_grads.keys() == last_grads.keys()
    for name, g in plain_grads.items():
        torch.testing.assert_close(last_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast_takes_the_channels_last_path_and_stays_close_to_fp32():
    enc = encoder(mode="group_norm").eval()
    wave = torch.randn(2, 1600)
    with torch.no_grad():
        ref = enc(wave).features
    seen = []
    enc.conv_layers[2].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(wave).features
    assert seen[0].dtype == torch.bfloat16
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 2e-2


def test_fp32_without_gradients_uses_row_conv_and_equals_the_plain_path(monkeypatch):
    enc = encoder(mode="group_norm").eval()
    wave = torch.randn(2, 1600)
    monkeypatch.setattr(feature_encoder, "runs_channels_last", lambda x: False)
    with torch.no_grad():
        ref = enc(wave).features
    monkeypatch.setattr(feature_encoder, "runs_channels_last", lambda x: x.device.type == "cpu")
    calls, real = [], feature_encoder.row_conv
    monkeypatch.setattr(feature_encoder, "row_conv",
                        lambda *a, **kw: calls.append(kw.get("gelu")) or real(*a, **kw))
    firsts, real_of = [], feature_encoder.row_conv_of
    monkeypatch.setattr(feature_encoder, "row_conv_of",
                        lambda act, *a: firsts.append(act) or real_of(act, *a))
    with torch.inference_mode():
        out = enc(wave).features
    # block 1 computes block 0 from the waveform (test_wave_block.py); every later block
    # applies its own GELU in place (nothing deferred)
    assert len(firsts) == 1
    assert calls == [False] * (len(enc.conv_layers) - 2)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_fp32_training_hands_the_first_blocks_norm_and_gelu_to_the_next_row_conv(monkeypatch):
    """With dropout on block 0's output (so that block 1 cannot compute block 0 from the
    waveform, test_wave_block.py), block 0's GroupNorm and GELU run inside block 1's
    row_conv, so that of block 0 only its convolution's output is kept for backward (not
    the activation as well)."""
    enc = encoder(mode="group_norm", dropout=0.1)
    wave = torch.randn(2, 1600)
    calls, real = [], feature_encoder.row_conv
    monkeypatch.setattr(feature_encoder, "row_conv",
                        lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    first = []

    def pack(t):
        if t.numel() == 2 * SMALL[0][0] * 319 and t.is_floating_point():    # [B, C0, T0]
            first.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = enc(wave)
    norm = enc.conv_layers[0].norm
    assert calls[0]["norm"] == (norm.weight, norm.bias, norm.eps)
    assert [kw["norm"] for kw in calls[1:]] == [None] * (len(calls) - 1)
    assert len(first) == 1
    out.features.sum().backward()
    assert norm.weight.grad is not None and norm.weight.grad.abs().sum() > 0
