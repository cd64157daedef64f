"""``F.linear(F.gelu(x), weight, bias)`` that keeps ``x``, not the GELU's output, for backward.

In a Transformer block's feed-forward part the GELU keeps its input for its backward and
the second linear keeps the GELU's output for its weight's gradient: two ``[B, T, F]``
tensors per block (5.8 MiB each at wav2vec 2.0 BASE, 2 x 5 s). :func:`gelu_linear` keeps
the input alone and recomputes the GELU in backward (0.5 ms per BASE block on 2 threads).
The arithmetic is the unfused pair's, so results are bitwise equal, also under CPU
autocast, whose state backward replays.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class _GeluLinear(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(x), weight, bias)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        rows = grad.reshape(-1, grad.shape[-1])                              # [N, out]
        if ctx.needs_input_grad[1]:
            hidden = F.gelu(x).reshape(-1, x.shape[-1])                       # [N, in]
            grad_w = (rows.t() @ hidden).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(0).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            grad_hidden = (grad @ weight).to(x.dtype)
            grad_x = torch.ops.aten.gelu_backward(grad_hidden, x)
        return grad_x, grad_w, grad_b


def gelu_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(F.gelu(x), weight, bias)`` for ``x`` ``[*, in]``, ``weight`` ``[out, in]``
    -> ``[*, out]``; on CPU with gradients the GELU is recomputed in backward."""
    if x.device.type != "cpu" or not torch.is_grad_enabled():
        return F.linear(F.gelu(x), weight, bias)
    return _GeluLinear.apply(x, weight, bias)
