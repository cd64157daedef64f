"""``GroupNorm(C, C)`` for channels-last activations: every channel normalised over time.

torch's CPU GroupNorm backward is about ten times slower on channels-last tensors than on
plain ones (229 ms against 26 ms at wav2vec 2.0 BASE's first conv output, 2 x 5 s, bf16).
:func:`channel_norm` keeps torch's forward and writes the backward as sums over time, which
are fast in either layout. Statistics and arithmetic are fp32 (fp64 for fp64 input); the
result has the input's dtype, so a bf16 activation is stored once, not as an fp32 copy.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _compute_dtype(x: Tensor) -> torch.dtype:
    """fp32 for fp32 and narrower inputs, fp64 for fp64."""
    return torch.promote_types(x.dtype, torch.float32)


class _ChannelNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        batch, channels = x.shape[:2]
        dtype = _compute_dtype(x)
        y, mean, rstd = torch.native_group_norm(x.to(dtype), weight.to(dtype), bias.to(dtype),
                                                batch, channels, x[0, 0].numel(), channels, eps)
        ctx.save_for_backward(x, mean, rstd, weight)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mean, rstd, weight = ctx.saved_tensors
        batch, channels = x.shape[:2]
        steps = tuple(range(2, x.dim()))
        per_channel = (batch, channels) + (1,) * len(steps)
        n = x[0, 0].numel()
        dtype = _compute_dtype(x)
        x_hat = (x.to(dtype) - mean.view(per_channel)).mul_(rstd.view(per_channel))  # x kept
        g = grad.to(dtype)
        g_sum = g.sum(steps)                                          # [B, C]
        g_x_hat_sum = (g * x_hat).sum(steps)                          # [B, C]
        scale = rstd * weight.to(dtype)                               # [B, C]
        # d x = scale * (g - mean_t(g) - x_hat * mean_t(g * x_hat))
        grad_x = (g * scale.view(per_channel)) \
            .add_((-scale * g_sum / n).view(per_channel)) \
            .addcmul_(x_hat, (-scale * g_x_hat_sum / n).view(per_channel))
        return (grad_x.to(x.dtype), g_x_hat_sum.sum(0).to(weight.dtype),
                g_sum.sum(0).to(weight.dtype), None)


def channel_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """``F.group_norm(x.float(), C, weight, bias, eps).type_as(x)`` for ``x`` ``[B, C, *]``
    in any memory layout, with a backward that is fast on channels-last tensors."""
    return _ChannelNorm.apply(x, weight, bias, eps)
