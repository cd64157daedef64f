"""channel_norm: GroupNorm(C, C) with a backward written as sums over time, in any layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from w2v.plugins.wav2vec2.channel_norm import channel_norm, channel_norm_gelu_

torch.set_num_threads(1)


def inputs(dtype, layout):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 1, 37, generator=g, dtype=torch.float64) * 3 + 1
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "plain-3d":
        x = x[:, :, 0]
    w = torch.randn(5, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    return x.to(dtype), w, b


@pytest.mark.parametrize("layout", ["plain-3d", "plain-4d", "channels_last"])
def test_gradients_are_exact_in_float64(layout):
    x, w, b = inputs(torch.float64, layout)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, w, b: channel_norm(x, w, b, 1e-5), args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["plain-3d", "channels_last"])
def test_equals_fp32_group_norm_cast_back(dtype, layout):
    x, w, b = inputs(dtype, layout)
    w, b = w.float(), b.float()
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)

    def run(norm):
        xs, ws, bs = (t.detach().clone().requires_grad_() for t in (x, w, b))
        g = grad.clone()
        y = norm(xs, ws, bs)
        y.backward(g)
        assert torch.equal(xs, x) and torch.equal(g, grad)      # inputs are left as they were
        return y, xs.grad, ws.grad, bs.grad

    ours = run(lambda x, w, b: channel_norm(x, w, b, 1e-5))
    ref = run(lambda x, w, b: F.group_norm(x.float(), x.shape[1], w, b, 1e-5).type_as(x))
    assert ours[0].dtype == dtype and ours[1].dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a.float(), r.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", ["plain-3d", "channels_last"])
def test_fused_gelu_gradients_are_exact_in_float64(layout):
    x, w, b = inputs(torch.float64, layout)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, w, b: channel_norm(x, w, b, 1e-5, gelu=True), args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_gelu_equals_gelu_of_the_norm(dtype):
    x, w, b = inputs(dtype, "channels_last")
    w, b = w.float(), b.float()
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)

    def run(norm):
        xs, ws, bs = (t.detach().clone().requires_grad_() for t in (x, w, b))
        y = norm(xs, ws, bs)
        y.backward(grad)
        return y, xs.grad, ws.grad, bs.grad

    ours = run(lambda x, w, b: channel_norm(x, w, b, 1e-5, gelu=True))
    ref = run(lambda x, w, b: F.gelu(F.group_norm(x.float(), x.shape[1], w, b, 1e-5)).type_as(x))
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a.float(), r.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", ["plain-3d", "plain-4d", "channels_last"])
@pytest.mark.parametrize("chunk", [1, 4, 256])
def test_in_place_form_overwrites_its_input_with_the_same_values(chunk, layout):
    x, w, b = inputs(torch.float32, layout)
    x = x * 50 + 1e3                               # a large mean: the two-pass statistics hold
    ref = F.gelu(F.group_norm(x, x.shape[1], w.float(), b.float(), 1e-5))
    y = x.clone()
    out = channel_norm_gelu_(y, w.float(), b.float(), 1e-5, chunk=chunk)
    assert out is y
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=2e-5)


def test_in_place_form_computes_only_in_fp32():
    x, w, b = inputs(torch.bfloat16, "channels_last")
    with pytest.raises(ValueError, match="fp32"):
        channel_norm_gelu_(x, w.float(), b.float(), 1e-5)


def test_fused_gelu_keeps_only_the_input_for_backward():
    x, w, b = inputs(torch.float32, "channels_last")
    x, w, b = x.requires_grad_(), w.float().requires_grad_(), b.float().requires_grad_()

    def saved_elements(fn):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t,
                                                      lambda t: t):
            fn()
        return sum(s for s in sizes if s >= x.numel())      # activation-sized tensors only

    assert saved_elements(lambda: channel_norm(x, w, b, 1e-5, gelu=True)) == x.numel()
    assert saved_elements(lambda: F.gelu(channel_norm(x, w, b, 1e-5))) == 2 * x.numel()
