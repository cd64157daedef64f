"""channel_norm: GroupNorm(C, C) with a backward written as sums over time, in any layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from w2v.plugins.wav2vec2.channel_norm import channel_norm

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
