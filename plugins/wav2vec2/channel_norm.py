"""``GroupNorm(C, C)`` for channels-last activations: every channel normalised over time.

torch's CPU GroupNorm backward is about ten times slower on channels-last tensors than on
plain ones (229 ms against 26 ms at wav2vec 2.0 BASE's first conv output, 2 x 5 s, bf16).
:func:`channel_norm` keeps torch's forward and writes the backward as sums over time, which
are fast in either layout. Statistics and arithmetic are fp32 (fp64 for fp64 input); the
result has the input's dtype, so a bf16 activation is stored once, not as an fp32 copy.

With ``gelu=True`` the GELU that follows the norm in a conv block is fused in: the output
is written once and the normalised activation is not kept for backward, which recomputes
it from the input (BASE's first conv output is 64 MB at 2 x 5 s). :func:`channel_norm_gelu_`
is the inference form: it overwrites its input, so the block allocates nothing more than
its convolution's output (a fresh large tensor costs a page fault per 4 KB on first touch).
:class:`NormedGelu` is the training form that :func:`row_conv` applies to its input piece
by piece: the block then keeps only the convolution's output and ``[B, C]`` statistics, and
its backward runs in place on the gradient that ``row_conv`` hands it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _compute_dtype(x: Tensor) -> torch.dtype:
    """fp32 for fp32 and narrower inputs, fp64 for fp64."""
    return torch.promote_types(x.dtype, torch.float32)


def _per_channel(x: Tensor) -> tuple[int, ...]:
    """The shape that broadcasts a ``[B, C]`` statistic over ``x`` ``[B, C, *]``."""
    return tuple(x.shape[:2]) + (1,) * (x.dim() - 2)


class _ChannelNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float, gelu: bool) -> Tensor:
        batch, channels = x.shape[:2]
        dtype = _compute_dtype(x)
        y, mean, rstd = torch.native_group_norm(x.to(dtype), weight.to(dtype), bias.to(dtype),
                                                batch, channels, x[0, 0].numel(), channels, eps)
        if gelu:
            torch.ops.aten.gelu_(y)
        ctx.gelu = gelu
        ctx.save_for_backward(x, mean, rstd, weight, bias)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mean, rstd, weight, bias = ctx.saved_tensors
        steps = tuple(range(2, x.dim()))
        shape = _per_channel(x)
        n = x[0, 0].numel()
        dtype = _compute_dtype(x)
        x_hat = (x.to(dtype) - mean.view(shape)).mul_(rstd.view(shape))          # x kept
        g = grad.to(dtype)
        if ctx.gelu:            # through the GELU, at the recomputed norm output, in place
            ones = (1,) * len(steps)
            z = torch.addcmul(bias.to(dtype).view(-1, *ones), x_hat,
                              weight.to(dtype).view(-1, *ones))
            g = torch.ops.aten.gelu_backward.grad_input(g, z, grad_input=z)
        g_sum = g.sum(steps)                                                      # [B, C]
        g_x_hat_sum = _column_dots(g, x_hat)                                      # [B, C]
        scale = rstd * weight.to(dtype)                                           # [B, C]
        # d x = scale * (g - mean_t(g) - x_hat * mean_t(g * x_hat)), written over x_hat
        grad_x = x_hat.mul_((-scale * g_x_hat_sum / n).view(shape)) \
            .addcmul_(g, scale.view(shape)).add_((-scale * g_sum / n).view(shape))
        return (grad_x.to(x.dtype), g_x_hat_sum.sum(0).to(weight.dtype),
                g_sum.sum(0).to(bias.dtype), None, None)


def _frames(x: Tensor) -> Tensor:
    """``x`` ``[B, C, *]`` as a ``[B, T, C]`` view (rows in channels-last memory)."""
    return x.movedim(1, -1).view(x.shape[0], -1, x.shape[1])


def _column_dots(a: Tensor, b: Tensor, chunk: int = 256) -> Tensor:
    """``(a * b).sum(frames)`` ``[B, C]`` of ``[B, C, *]`` tensors, ``chunk`` frames at a
    time: no temporary the size of ``a``."""
    a, b = (t.movedim(1, -1).reshape(t.shape[0], -1, t.shape[1]) for t in (a, b))
    total = a.new_zeros(a.shape[0], a.shape[2])
    for a_part, b_part in zip(a.split(chunk, 1), b.split(chunk, 1)):
        total += (a_part * b_part).sum(1)
    return total


def channel_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float, *,
                 gelu: bool = False) -> Tensor:
    """``F.group_norm(x.float(), C, weight, bias, eps).type_as(x)`` for ``x`` ``[B, C, *]``
    in any memory layout, with a backward that is fast on channels-last tensors; with
    ``gelu`` the GELU of that (computed in fp32 before the cast)."""
    return _ChannelNorm.apply(x, weight, bias, eps, gelu)


def channel_stats(rows: Tensor, eps: float, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Mean and ``1 / sqrt(var + eps)`` over time, ``[B, 1, C]`` each, of ``rows``
    ``[B, T, C]``, in ``rows``' dtype. Two passes: the mean, then the centred squares summed
    ``chunk`` frames at a time, so that no temporary the size of ``rows`` is made."""
    steps = rows.shape[1]
    mean = rows.sum(1, keepdim=True).div_(steps)                              # [B, 1, C]
    squares = torch.zeros_like(mean)
    for part in rows.split(chunk, 1):
        centred = part - mean
        squares += centred.mul_(centred).sum(1, keepdim=True)
    return mean, squares.div_(steps).add_(eps).rsqrt_()


@torch.no_grad()
def channel_norm_gelu_(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
                       chunk: int = 256) -> Tensor:
    """``channel_norm(x, ..., gelu=True)`` written into ``x`` itself, without autograd.

    ``x`` ``[B, C, *]`` fp32, fastest in channels-last memory (``[B, T, C]`` rows);
    statistics from :func:`channel_stats`. Returns ``x``.
    """
    if x.dtype != torch.float32:
        raise ValueError(f"channel_norm_gelu_ computes in place in fp32, found {x.dtype}")
    rows = _frames(x)                                                         # [B, T, C]
    mean, rstd = channel_stats(rows, eps, chunk)
    scale = rstd.mul_(weight)                                                 # [B, 1, C]
    torch.addcmul(bias - mean * scale, rows, scale, out=rows)
    return torch.ops.aten.gelu_(x)


class NormedGelu:
    """``GELU(GroupNorm(C, C)(x))`` of ``[B, T, C]`` rows, as :func:`row_conv`'s input
    activation: computed per piece of an utterance's rows, never for the whole input.

    Built inside an autograd function's forward from the rows ``x`` (statistics over each
    utterance's T, as :func:`channel_stats`) and the norm's ``weight`` and ``bias`` ``[C]``.
    Its arithmetic is torch's GroupNorm kernel's: ``x * scale + shift`` per utterance and
    channel, and a backward from the sums of ``g`` and ``g * x`` over time.
    """

    def __init__(self, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> None:
        self.mean, self.rstd = channel_stats(x, eps)                         # [B, 1, C]
        self.weight = weight.to(x.dtype)
        self.scale = self.rstd * self.weight
        self.shift = bias.to(x.dtype) - self.mean * self.scale

    def __call__(self, b: int | slice, rows: Tensor) -> Tensor:
        """The activation of utterance ``b``'s rows ``[n, C]`` (or of ``x`` whole, for
        ``b = slice(None)``), as a new tensor."""
        return torch.ops.aten.gelu_(torch.addcmul(self.shift[b], rows, self.scale[b]))

    def backward_(self, grad: Tensor, x: Tensor,
                  chunk: int = 1024) -> tuple[Tensor, Tensor, Tensor]:
        """``grad`` ``[B, T, C]``, the gradient at the activation, overwritten with the
        gradient at ``x``; returns it and the gradients of the norm's weight and bias
        ``[C]``. The sums run ``chunk`` frames at a time: no temporary the size of ``x``."""
        batch, steps, _ = x.shape
        g_sum = x.new_zeros(batch, x.shape[-1])                                 # [B, C]
        gx_sum = torch.zeros_like(g_sum)
        for b in range(batch):
            for lo in range(0, steps, chunk):
                xs, gs = x[b, lo:lo + chunk], grad[b, lo:lo + chunk]
                z = torch.addcmul(self.shift[b], xs, self.scale[b])
                torch.ops.aten.gelu_backward.grad_input(gs, z, grad_input=gs)   # at the norm
                g_sum[b] += gs.sum(0)
                gx_sum[b] += torch.mul(gs, xs, out=z).sum(0)
        mean, rstd = self.mean[:, 0], self.rstd[:, 0]                          # [B, C]
        # d x = c1 * g + c2 * x + c3, with c1 = rstd * weight (torch's GroupNorm backward)
        c2 = (g_sum * mean - gx_sum) * self.weight * rstd.pow(3) / steps
        c3 = -c2 * mean - g_sum * self.weight * rstd / steps
        grad.mul_(self.scale).addcmul_(x, c2[:, None]).add_(c3[:, None])      # in place
        return grad, ((gx_sum - g_sum * mean) * rstd).sum(0), g_sum.sum(0)
