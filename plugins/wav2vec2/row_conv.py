"""A strided 1-d convolution over ``[B, T, C]`` rows, as matrix products (im2col).

``row_conv(x [B, T, C_in], weight [C_out, C_in, k], stride) -> [B, T_out, C_out]`` equals
``F.conv1d`` on the transposed input, transposed back, with ``T_out = (T - k) // stride + 1``.
The conv feature encoder uses it for fp32 on CPU, where oneDNN's convolutions reorder
every activation and gradient: the forward copies each output frame's window into one
``[B * T_out, k * C_in]`` matrix and multiplies it by the flattened weight; the backward
rebuilds that matrix for the weight's gradient, frees it, and adds one product per tap into
the input's gradient (a window-gradient matrix would be as large as the window matrix). At
wav2vec 2.0 BASE's encoder (2 x 5 s, 2 threads) forward + backward takes about 0.82x the time
of the plain-layout encoder on ``F.conv1d`` (``tests/benchmarks/bench_conv_encoder.py``).

With ``gelu=True`` it convolves ``GELU(x)``: the GELU is applied to the window matrix, and
the backward recomputes it there, so only ``x`` is kept (the previous conv block's output
before its activation), not the activation as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _windows(x: Tensor, kernel: int, stride: int, steps: int) -> Tensor:
    """``[B, steps, kernel * C]`` view of ``x`` ``[B, T, C]`` (contiguous): each output
    step's window, taps in order, overlapping in memory when ``kernel > stride``."""
    B, T, C = x.shape
    return x.as_strided((B, steps, kernel * C), (T * C, stride * C, 1))


def _window_matrix(x: Tensor, kernel: int, stride: int, steps: int, gelu: bool) -> Tensor:
    """``[B * steps, kernel * C]``: the windows of ``x`` ``[B, T, C]``, or of ``F.gelu(x)``.
    The reshape copies overlapping windows, so the GELU then runs in place on the copy;
    windows that tile ``x`` exactly are a view of ``x``, which is left unchanged."""
    B, _, C = x.shape
    cols = _windows(x, kernel, stride, steps).reshape(B * steps, kernel * C)
    if not gelu:
        return cols
    return F.gelu(cols) if cols._base is not None else torch.ops.aten.gelu_(cols)


def _taps_last(weight: Tensor) -> Tensor:
    """``[C_out, C_in, k]`` -> ``[C_out, k * C_in]``, matching :func:`_windows`' order."""
    return weight.permute(0, 2, 1).reshape(weight.shape[0], -1)


class _RowConv(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x: Tensor, weight: Tensor, stride: int, gelu: bool) -> Tensor:
        B, T, C = x.shape
        kernel = weight.shape[2]
        steps = (T - kernel) // stride + 1
        cols = _window_matrix(x, kernel, stride, steps, gelu)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.gelu = stride, gelu
        return (cols @ _taps_last(weight).to(cols.dtype).t()).view(B, steps, -1)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        stride = ctx.stride
        B, T, C = x.shape
        c_out, _, kernel = weight.shape
        steps = grad.shape[1]
        grad = grad.reshape(B * steps, c_out)
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            cols = _window_matrix(x, kernel, stride, steps, ctx.gelu)
            grad_w = (grad.t() @ cols.to(grad.dtype)).view(c_out, kernel, C).permute(0, 2, 1)
            grad_w = grad_w.to(weight.dtype)
            del cols                                  # freed before the input's gradient
        if ctx.needs_input_grad[0]:                   # overlap-add, one product per tap
            grad_x = x.new_zeros(B, T, C)
            weight = weight.to(grad.dtype)
            for j in range(kernel):
                tap = (grad @ weight[:, :, j]).view(B, steps, C)
                grad_x[:, j:j + stride * (steps - 1) + 1:stride] += tap
            if ctx.gelu:                              # through the GELU, in place
                grad_x = torch.ops.aten.gelu_backward.grad_input(grad_x, x, grad_input=grad_x)
        return grad_x, grad_w, None, None


def row_conv(x: Tensor, weight: Tensor, stride: int, *, gelu: bool = False) -> Tensor:
    """``x`` ``[B, T, C_in]`` (made contiguous), ``weight`` ``[C_out, C_in, k]`` ->
    ``[B, (T - k) // stride + 1, C_out]``, without bias; with ``gelu`` the convolution of
    ``F.gelu(x)``, keeping only ``x`` for backward."""
    return _RowConv.apply(x.contiguous(), weight, stride, gelu)
