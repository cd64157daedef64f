"""fft_conv: a grouped long-kernel conv1d through the FFT (the positional conv on CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from w2v.plugins.wav2vec2 import fft_conv as module
from w2v.plugins.wav2vec2.fft_conv import fft_conv, fft_length, pays_off
from w2v.plugins.wav2vec2.positional import ConvPositionalEmbedding

torch.set_num_threads(1)


def _smooth(m: int) -> bool:
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


def test_fft_length_is_the_smallest_even_5_smooth_length():
    for n in range(1, 3000):
        expected = next(m for m in range(max(n, 2), 4 * n + 2) if m % 2 == 0 and _smooth(m))
        assert fft_length(n) == expected, n


@pytest.mark.parametrize("length,kernel,groups", [(40, 9, 3), (37, 8, 1), (16, 16, 2)])
def test_gradients_are_exact_in_float64(length, kernel, groups):
    g = torch.Generator().manual_seed(length)
    x = torch.randn(2, 6, length, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 6 // groups, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(fft_conv(x, w, groups), F.conv1d(x, w, groups=groups),
                               rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, w: fft_conv(x, w, groups), (x, w))


@pytest.mark.parametrize("chunk_bytes", [module.CHUNK_BYTES, 2 * 16 * 4 * 4 * 3])   # 3 freqs
def test_equals_grouped_conv1d_in_float32(monkeypatch, chunk_bytes):
    monkeypatch.setattr(module, "CHUNK_BYTES", chunk_bytes)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 64, 80 + 31, generator=g, requires_grad=True)
    w = torch.randn(64, 16, 32, generator=g, requires_grad=True)
    grad = torch.randn(3, 64, 80, generator=g)
    ours = fft_conv(x, w, 4)
    ours.backward(grad)
    got = (ours.detach(), x.grad.clone(), w.grad.clone())
    x.grad = w.grad = None
    ref = F.conv1d(x, w, groups=4)
    ref.backward(grad)
    for a, b in zip(got, (ref.detach(), x.grad, w.grad)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_pays_off_only_for_long_fp32_cpu_batches():
    long = torch.zeros(2, 768, 249 + 127)            # 498 output frames, FFT length 384
    assert pays_off(long, 128)
    assert not pays_off(long[:1], 128)                # 249 frames < 384
    assert not pays_off(long, 16)                     # a short kernel stays a conv
    assert not pays_off(long.bfloat16(), 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not pays_off(long, 128)


@pytest.mark.parametrize("causal", [False, True])
def test_positional_embedding_through_the_fft_equals_its_conv(monkeypatch, causal):
    torch.manual_seed(0)
    pos = ConvPositionalEmbedding(64, 32, 4, causal=causal)
    x = torch.randn(4, 50, 64, requires_grad=True)
    assert pays_off(F.pad(x.transpose(1, 2), (31, 0)), 32)
    results = []
    for fft in (True, False):
        monkeypatch.setattr("w2v.plugins.wav2vec2.positional.pays_off", lambda z, k: fft)
        y = pos(x)
        y.pow(2).sum().backward()
        results.append((y.detach(), x.grad, *(p.grad for p in pos.parameters())))
        x.grad = None
        pos.zero_grad(set_to_none=True)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
