"""gelu_linear: F.linear(F.gelu(x)) keeping only x for backward, and the Transformer's use."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from saved_storages import saved_storage_bytes
from w2v.plugins.wav2vec2.gelu_linear import gelu_linear
from w2v.plugins.wav2vec2.transformer import TransformerLayer

torch.set_num_threads(1)


def test_gradients_are_exact():
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gelu_linear, (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: gelu_linear(x, w), (x, w))


@pytest.mark.parametrize("autocast", [False, True])
def test_results_and_gradients_equal_the_unfused_pair_bitwise(autocast):
    torch.manual_seed(0)
    x = torch.randn(2, 7, 16, requires_grad=True)
    lin = nn.Linear(16, 8)
    g = torch.randn(2, 7, 8)
    results = []
    for fused in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            h = x * 1.0
            y = gelu_linear(h, lin.weight, lin.bias) if fused else lin(F.gelu(h))
        y.backward(g.to(y.dtype))
        results.append((y.detach(), x.grad, lin.weight.grad, lin.bias.grad))
        x.grad = lin.weight.grad = lin.bias.grad = None
    for plain, fused in zip(*results):
        assert fused.dtype == plain.dtype and torch.equal(fused, plain)


def test_keeps_the_input_not_the_gelu_output():
    x = torch.randn(50, 64, requires_grad=True)
    w = torch.randn(16, 64, requires_grad=True)
    h = x * 1.0                                    # a non-leaf input, like fc1's output
    _, fused = saved_storage_bytes(lambda: gelu_linear(h, w))
    _, plain = saved_storage_bytes(lambda: F.linear(F.gelu(h), w))
    assert plain - fused == h.numel() * 4


def test_transformer_layer_fuses_only_a_plain_hook_free_fc2():
    torch.manual_seed(0)
    layer = TransformerLayer(16, 32, 2, dropout=0.0, attention_dropout=0.0,
                             activation_dropout=0.0, layer_norm_first=False, eps=1e-5).train()
    x = torch.randn(2, 5, 16)
    _, fused = saved_storage_bytes(lambda: layer(x))
    seen = []
    handle = layer.fc2.register_forward_hook(lambda m, a, o: seen.append(a[0].shape))
    y_hooked, hooked = saved_storage_bytes(lambda: layer(x))
    handle.remove()
    assert seen == [(2, 5, 32)]                    # the hook saw fc2's call
    assert hooked - fused == 2 * 5 * 32 * 4        # and the GELU output was kept for it
    assert torch.equal(y_hooked, layer(x))
    layer.activation_dropout.p = 0.1               # activation dropout: the unfused path
    _, dropped = saved_storage_bytes(lambda: layer(x))
    assert dropped > hooked
