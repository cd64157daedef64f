"""A strided 1-d convolution over ``[B, T, C]`` rows, as matrix products (im2col).

``row_conv(x [B, T, C_in], weight [C_out, C_in, k], stride) -> [B, T_out, C_out]`` equals
``F.conv1d`` on the transposed input, transposed back, with ``T_out = (T - k) // stride + 1``.
The conv feature encoder uses it for fp32 on CPU, where oneDNN's convolutions reorder
every activation and gradient: the forward copies each output frame's window into a
``[B * steps, k * C_in]`` matrix and multiplies it by the flattened weight; the backward
rebuilds that matrix for the weight's gradient and adds one product per tap into the
input's gradient (a window-gradient matrix would be as large as the window matrix). Both
run over the output frames in chunks of at most 16 MiB of windows (93 MiB whole at BASE's
second block, 2 x 5 s): a chunk that size is served again from the process's heap, while a
larger tensor is fresh memory from the kernel whose pages fault in on first touch. At
wav2vec 2.0 BASE's encoder (2 x 5 s, 2 threads) forward + backward takes 0.78-0.82x the time
of the plain-layout encoder on ``F.conv1d`` on the two CPUs measured
(``tests/benchmarks/bench_conv_encoder.py``, docs/benchmarks.md).

With ``gelu=True`` it convolves ``GELU(x)``: the GELU is applied to the window matrix, and
the backward recomputes it there, so only ``x`` is kept (the previous conv block's output
before its activation), not the activation as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _window_matrix(x: Tensor, kernel: int, stride: int, start: int, stop: int,
                   gelu: bool) -> Tensor:
    """``[B * (stop - start), kernel * C]``: the windows of output steps ``start:stop`` of
    ``x`` ``[B, T, C]`` (contiguous), taps in order, or of ``F.gelu(x)``. The reshape copies
    overlapping windows, so the GELU then runs in place on the copy; windows that tile
    ``x`` exactly are a view of ``x``, which is left unchanged."""
    B, T, C = x.shape
    steps = stop - start
    windows = x[:, start * stride:].as_strided((B, steps, kernel * C), (T * C, stride * C, 1))
    cols = windows.reshape(B * steps, kernel * C)
    if not gelu:
        return cols
    return F.gelu(cols) if cols._base is not None else torch.ops.aten.gelu_(cols)


#: the largest window matrix built at once (below glibc's largest mmap threshold, 32 MiB)
CHUNK_BYTES = 16 << 20


def _chunks(x: Tensor, kernel: int, steps: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of output steps whose window matrices fit ``CHUNK_BYTES``;
    one range under ``torch.compile``, whose graphs would otherwise specialise on the
    length (the compiler plans the memory itself)."""
    B, _, C = x.shape
    if torch.compiler.is_compiling():
        return [(0, steps)]
    size = max(1, CHUNK_BYTES // (B * kernel * C * x.element_size()))
    return [(start, min(start + size, steps)) for start in range(0, steps, size)]


def _taps_last(weight: Tensor) -> Tensor:
    """``[C_out, C_in, k]`` -> ``[C_out, k * C_in]``, matching :func:`_window_matrix`."""
    return weight.permute(0, 2, 1).reshape(weight.shape[0], -1)


class _RowConv(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x: Tensor, weight: Tensor, stride: int, gelu: bool) -> Tensor:
        B, T, C = x.shape
        c_out, _, kernel = weight.shape
        steps = (T - kernel) // stride + 1
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.gelu = stride, gelu
        flat = _taps_last(weight).to(x.dtype).t()                          # [k * C, C_out]
        chunks = _chunks(x, kernel, steps)
        if len(chunks) == 1:
            return (_window_matrix(x, kernel, stride, 0, steps, gelu) @ flat).view(B, steps, -1)
        out = x.new_empty(B, steps, c_out)
        for start, stop in chunks:
            cols = _window_matrix(x, kernel, stride, start, stop, gelu)
            out[:, start:stop] = (cols @ flat).view(B, stop - start, c_out)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        stride, gelu = ctx.stride, ctx.gelu
        B, T, C = x.shape
        c_out, _, kernel = weight.shape
        steps = grad.shape[1]
        chunks = _chunks(x, kernel, steps)
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = grad.new_zeros(c_out, kernel * C)
            for start, stop in chunks:
                cols = _window_matrix(x, kernel, stride, start, stop, gelu)
                rows = grad[:, start:stop].reshape(-1, c_out)
                grad_w.addmm_(rows.t(), cols.to(grad.dtype))
            grad_w = grad_w.view(c_out, kernel, C).permute(0, 2, 1).to(weight.dtype)
        if ctx.needs_input_grad[0]:                   # overlap-add, one product per tap
            grad_x = x.new_zeros(B, T, C)
            weight = weight.to(grad.dtype)
            for start, stop in chunks:
                part = grad[:, start:stop]
                for j in range(kernel):
                    first = start * stride + j
                    grad_x[:, first:first + stride * (stop - start - 1) + 1:stride] += \
                        part @ weight[:, :, j]
            if gelu:                                  # through the GELU, in place
                grad_x = torch.ops.aten.gelu_backward.grad_input(grad_x, x, grad_input=grad_x)
        return grad_x, grad_w, None, None


def row_conv(x: Tensor, weight: Tensor, stride: int, *, gelu: bool = False) -> Tensor:
    """``x`` ``[B, T, C_in]`` (made contiguous), ``weight`` ``[C_out, C_in, k]`` ->
    ``[B, (T - k) // stride + 1, C_out]``, without bias; with ``gelu`` the convolution of
    ``F.gelu(x)``, keeping only ``x`` for backward."""
    return _RowConv.apply(x.contiguous(), weight, stride, gelu)
