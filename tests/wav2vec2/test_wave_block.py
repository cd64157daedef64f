"""WaveBlock and row_conv_of: the conv stack's first block, computed from the waveform piece
by piece inside the second block's convolution, at inference and in training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from w2v.interfaces import waveform_signal
from w2v.plugins.wav2vec2 import row_conv as row_conv_module
from w2v.plugins.wav2vec2 import wave_block
from w2v.plugins.wav2vec2.feature_encoder import (Wav2Vec2FeatureEncoder,
                                                   Wav2Vec2FeatureEncoderConfig)
from w2v.plugins.wav2vec2.row_conv import row_conv, row_conv_of
from w2v.plugins.wav2vec2.wave_block import WaveBlock

torch.set_num_threads(1)


def first_block(norm: str | None, bias: bool, channels: int = 6, kernel: int = 10,
                dtype=torch.float64) -> tuple[nn.Conv1d, nn.Module | None]:
    torch.manual_seed(0)
    conv = nn.Conv1d(1, channels, kernel, stride=5, bias=bias).to(dtype)
    if norm == "group":
        layer = nn.GroupNorm(channels, channels)
    elif norm == "layer":
        layer = nn.LayerNorm(channels)
    else:
        return conv, None
    with torch.no_grad():            # not the identity init, so that the affine part counts
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.3, 0.3)
    return conv, layer.to(dtype)


def plain_activation(wave: torch.Tensor, conv: nn.Conv1d, norm: nn.Module | None):
    """``[B, T, C]``: the block computed the ordinary way, whole."""
    x = conv(wave[:, None])                                             # [B, C, T]
    if isinstance(norm, nn.GroupNorm):
        x = norm(x)
    elif isinstance(norm, nn.LayerNorm):
        x = norm(x.transpose(1, 2)).transpose(1, 2)
    return F.gelu(x).transpose(1, 2)


@pytest.mark.parametrize("norm", ["group", "layer", None])
@pytest.mark.parametrize("bias", [False, True])
def test_any_rows_of_the_activation_equal_the_block_computed_whole(norm, bias):
    """Group norm statistics come from the windows' mean and covariance, so rows read alone
    are normalised over the whole utterance, exactly (float64)."""
    conv, layer = first_block(norm, bias)
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(2, 997, dtype=torch.float64, generator=g) * torch.tensor([[1.0], [3.0]],
                                                                                dtype=torch.float64)
    wave[1] += 0.5                                            # a DC offset: the mean counts
    ref = plain_activation(wave, conv, layer)                 # [B, T, C]
    act = WaveBlock(wave, conv.weight, conv.bias, conv.stride[0], layer)
    assert act.windows.shape[:2] == ref.shape[:2] and act.width == ref.shape[-1]
    for b in range(2):
        for lo, hi in [(0, ref.shape[1]), (0, 1), (17, 60), (ref.shape[1] - 3, ref.shape[1])]:
            torch.testing.assert_close(act(b, act.windows[b, lo:hi]), ref[b, lo:hi],
                                       rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("split", [True, False], ids=["tap groups", "window matrix"])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2), (4, 3)])
def test_row_conv_of_equals_row_conv_of_the_whole_activation(kernel, stride, split,
                                                            monkeypatch):
    """Pieces of a few rows each (CHUNK_BYTES shrunk) overlap by the kernel's reach and
    together give the convolution of the whole activation."""
    monkeypatch.setattr(row_conv_module, "SPLIT_MIN", 0 if split else 1 << 30)
    monkeypatch.setattr(row_conv_module, "CHUNK_BYTES", 7 * 6 * 4)
    conv, layer = first_block("group", bias=False, dtype=torch.float32)
    g = torch.Generator().manual_seed(2)
    wave = torch.randn(3, 1203, generator=g)
    weight = torch.randn(5, 6, kernel, generator=g)
    with torch.no_grad():
        whole = row_conv(plain_activation(wave, conv, layer), weight, stride)
    act = WaveBlock(wave, conv.weight, conv.bias, conv.stride[0], layer)
    torch.testing.assert_close(row_conv_of(act, weight, stride), whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["group", "layer"])
@pytest.mark.parametrize("bias", [False, True])
def test_gradients_are_exact_in_float64(norm, bias, monkeypatch):
    """Through the second block's weight and the first block's conv and norm (a GroupNorm's
    statistics included); pieces of a few rows each."""
    monkeypatch.setattr(row_conv_module, "CHUNK_BYTES", 9 * 6 * 8)
    monkeypatch.setattr(wave_block, "CHUNK_FRAMES", 7)
    conv, layer = first_block(norm, bias)
    g = torch.Generator().manual_seed(5)
    wave = torch.randn(2, 213, dtype=torch.float64, generator=g) + 0.3
    weight = torch.randn(4, 6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    params = [conv.weight, layer.weight, layer.bias] + ([conv.bias] if bias else [])

    def second_block(weight, *params):
        first, gamma, beta, *rest = params
        norm_layer = (nn.GroupNorm(6, 6) if norm == "group" else nn.LayerNorm(6)).double()
        del norm_layer.weight, norm_layer.bias
        norm_layer.weight, norm_layer.bias = gamma, beta
        act = WaveBlock(wave, first, rest[0] if rest else None, 5, norm_layer)
        return row_conv_of(act, weight, 2)

    assert torch.autograd.gradcheck(second_block, (weight, *params))


@pytest.mark.parametrize("kind", ["group", "layer"])
def test_training_keeps_only_the_waveform_and_statistics(kind):
    """No tensor the size of the first block's output is saved for backward, and its
    parameters get the gradients of the block computed whole."""
    conv, norm = first_block(kind, bias=kind == "layer", channels=16, dtype=torch.float32)
    wave = torch.randn(2, 4000, generator=torch.Generator().manual_seed(6))
    weight = torch.randn(8, 16, 3, generator=torch.Generator().manual_seed(7),
                         requires_grad=True)
    first_size = 2 * 16 * ((4000 - 10) // 5 + 1)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = row_conv_of(WaveBlock(wave, conv.weight, conv.bias, 5, norm), weight, 2)
    assert saved and max(saved) < first_size
    probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(8))
    params = [weight, conv.weight, norm.weight, norm.bias] + \
        ([conv.bias] if conv.bias is not None else [])
    ours = torch.autograd.grad((out * probe).sum(), params)
    whole = row_conv(plain_activation(wave, conv, norm), weight, 2)
    theirs = torch.autograd.grad((whole * probe).sum(), params)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_training_refuses_a_first_block_without_a_norm():
    conv, _ = first_block(None, bias=True, dtype=torch.float32)
    act = WaveBlock(torch.randn(1, 400), conv.weight, conv.bias, 5, None)
    with pytest.raises(ValueError, match="with a norm"):
        row_conv_of(act, torch.randn(4, 6, 3), 2)


@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2), (4, 3), (1, 3), (10, 5)])
def test_the_input_gradient_by_rows_equals_the_whole_one(kernel, stride):
    """Any rows of the gradient at the second block's input, from the output steps that
    reach them, including the rows past the last window (zero)."""
    g = torch.Generator().manual_seed(9)
    length, width = 53, 4
    steps = (length - kernel) // stride + 1
    grad = torch.randn(1, steps, 6, generator=g, dtype=torch.float64)
    flat = torch.randn(6, kernel * width, generator=g, dtype=torch.float64)
    whole = row_conv_module._input_grad(grad, flat, kernel, stride, length)[0]
    for lo, hi in [(0, length), (0, 1), (5, 12), (7, 8), (length - 5, length), (20, 47)]:
        rows = row_conv_module._input_grad_rows(grad[0], flat, kernel, stride, lo, hi)
        torch.testing.assert_close(rows, whole[lo:hi], rtol=1e-12, atol=1e-12)


class Shapes(TorchDispatchMode):
    """The sizes of every tensor the operations return."""

    def __init__(self):
        super().__init__()
        self.numels: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.numels += [t.numel() for t in torch.utils._pytree.tree_leaves(out)
                        if isinstance(t, torch.Tensor)]
        return out


def encoder(mode: str, **kw) -> Wav2Vec2FeatureEncoder:
    torch.manual_seed(0)
    cfg = Wav2Vec2FeatureEncoderConfig(conv_layers=[(32, 10, 5), (32, 3, 2), (24, 2, 2)],
                                       mode=mode, **kw)
    enc = Wav2Vec2FeatureEncoder.from_config(cfg, waveform_signal()).eval()
    for m in enc.modules():
        if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return enc


@pytest.mark.parametrize("kw", [dict(mode="group_norm"), dict(mode="layer_norm", conv_bias=True)],
                         ids=["group-norm", "layer-norm-bias"])
def test_inference_never_makes_the_first_blocks_output_and_equals_training_mode(kw):
    """At inference the encoder's features equal those of its training path (the first block
    computed whole), and no operation returns a tensor the size of the first block's output."""
    enc = encoder(**kw)
    g = torch.Generator().manual_seed(3)
    wave = torch.randn(2, 4000, generator=g)
    lengths = torch.tensor([4000, 3100])
    whole = enc(wave, lengths)                              # with gradients: the training path
    first_size = 2 * 32 * ((4000 - 10) // 5 + 1)
    with torch.inference_mode(), Shapes() as seen:
        out = enc(wave, lengths)
    assert first_size not in seen.numels
    torch.testing.assert_close(out.features, whole.features.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.penalty, whole.penalty.detach(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("case", ["exclude padding", "dropout in training mode"])
def test_the_first_block_runs_whole_where_its_output_is_not_a_function_of_the_windows(case):
    """Statistics over valid frames only, and dropout on the first block's output, keep the
    ordinary path (and its result)."""
    if case == "exclude padding":
        enc = encoder("group_norm", group_norm_padding="exclude")
    else:
        enc = encoder("group_norm", dropout=0.5).train()
    wave = torch.randn(2, 4000, generator=torch.Generator().manual_seed(4))
    lengths = torch.tensor([4000, 3100])
    first_size = 2 * 32 * ((4000 - 10) // 5 + 1)
    with torch.inference_mode(), Shapes() as seen:
        enc(wave, lengths)
    assert first_size in seen.numels
