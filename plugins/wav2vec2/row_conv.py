"""A strided 1-d convolution over ``[B, T, C]`` rows, as matrix products.

``row_conv(x [B, T, C_in], weight [C_out, C_in, k], stride) -> [B, T_out, C_out]`` equals
``F.conv1d`` on the transposed input, transposed back, with ``T_out = (T - k) // stride + 1``.
The conv feature encoder uses it for fp32 on CPU, where oneDNN's convolutions reorder
every activation and gradient.

Taps in groups of ``stride``: output step ``t`` reads input rows ``t * stride ...``, so the
``stride`` taps of group ``j`` read ``stride * C_in`` consecutive values from row
``(t + j) * stride`` on, and over all ``t`` these form a strided ``[T_out, stride * C_in]``
view of ``x``: no copy. The output is one matrix product per group, accumulated in place
(two for BASE's kernel 3, stride 2; one for kernel 2, stride 2), the weight's gradient
likewise, and the input's gradient is written through the same views. The products run
per utterance (each thousands of rows at BASE): across an utterance boundary the rows are
in general not evenly spaced, so one view cannot span the batch. Narrow inputs
(``stride * C_in`` under ``SPLIT_MIN``) and compiled graphs use one ``[B * T_out, k * C_in]``
window matrix (im2col) instead. At wav2vec 2.0 BASE's encoder (2 x 5 s, 2 threads) forward
+ backward takes 0.64x the time of the plain layout on ``F.conv1d``, and the tap groups
0.90x that of the window matrices (``tests/benchmarks/bench_conv_encoder.py``,
docs/benchmarks.md).

With ``gelu=True`` it convolves ``GELU(x)`` and keeps only ``x`` for backward (the previous
conv block's output before its activation), not the activation as well; with ``norm`` it
convolves ``GELU(GroupNorm(C, C)(x))`` (:class:`~.channel_norm.NormedGelu`) and keeps ``x``
and ``[B, C]`` statistics. The activation is computed, in forward and again for the
weight's gradient, in pieces of at most 16 MiB, which the process's heap serves again (a
larger tensor is fresh memory from the kernel whose pages fault in on first touch), and
its backward runs in place on the input's gradient.

:func:`row_conv_of` convolves an activation that exists only in pieces: the conv stack's
first block, computed from the waveform (:class:`~.wave_block.WaveBlock`). Its backward
builds the input's gradient piece by piece too, from the output steps that reach each piece.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .channel_norm import NormedGelu
from .wave_block import WaveBlock

#: below this many input values per stride (``stride * C_in``) one window matrix is built
SPLIT_MIN = 64

#: the largest GELU piece computed at once (below glibc's largest mmap threshold, 32 MiB)
CHUNK_BYTES = 16 << 20


class _Gelu:
    """``GELU(x)`` as :func:`row_conv`'s input activation (the interface of
    :class:`~.channel_norm.NormedGelu`)."""

    def __call__(self, b: int | slice, rows: Tensor) -> Tensor:
        return F.gelu(rows)

    def backward_(self, grad: Tensor, x: Tensor) -> tuple[Tensor]:
        return (torch.ops.aten.gelu_backward.grad_input(grad, x, grad_input=grad),)


Activation = _Gelu | NormedGelu


def _window_matrix(x: Tensor, kernel: int, stride: int, gelu: bool) -> Tensor:
    """``[B * T_out, kernel * C]``: each output step's window of ``x`` ``[B, T, C]``
    (contiguous), taps in order, or of ``F.gelu(x)``. The reshape copies overlapping
    windows, so the GELU then runs in place on the copy; windows that tile ``x`` exactly
    are a view of ``x``, which is left unchanged."""
    B, T, C = x.shape
    steps = (T - kernel) // stride + 1
    windows = x.as_strided((B, steps, kernel * C), (T * C, stride * C, 1))
    cols = windows.reshape(B * steps, kernel * C)
    if not gelu:
        return cols
    return F.gelu(cols) if cols._base is not None else torch.ops.aten.gelu_(cols)


def _windows(x: Tensor, kernel: int, stride: int, act: Activation | None) -> Tensor:
    """:func:`_window_matrix` of ``act(x)``: a GELU runs on the window copy, another
    activation on the whole input first."""
    if isinstance(act, NormedGelu):
        return _window_matrix(act(slice(None), x), kernel, stride, False)
    return _window_matrix(x, kernel, stride, act is not None)


def _splits_taps(width: int, stride: int) -> bool:
    """Whether tap groups of ``width`` channels are products of their own (else one window
    matrix holds every tap)."""
    return stride * width >= SPLIT_MIN and not torch.compiler.is_compiling()


def _tap_groups(kernel: int, stride: int, channels: int) -> list[tuple[int, int]]:
    """Column ranges ``(lo, hi)`` of the taps-last weight ``[C_out, k * C]``, one per group
    of ``stride`` consecutive taps (the last one may hold fewer)."""
    return [(j * stride * channels, min((j + 1) * stride, kernel) * channels)
            for j in range(math.ceil(kernel / stride))]


def _group_view(rows: Tensor, j: int, stride: int, steps: int, width: int) -> Tensor:
    """``[steps, width]`` view of ``rows`` ``[n, C]`` (contiguous): row ``t`` holds the
    ``width`` values from row ``(t + j) * stride`` on."""
    return rows[j * stride:].as_strided((steps, width), (stride * rows.shape[-1], 1))


def _pieces(x: Tensor, kernel: int, stride: int, steps: int, act: Activation | None,
            width: int | None = None) -> Iterator[tuple[int, int, int, Tensor]]:
    """``(b, start, stop, rows)``: the input rows ``[n, C]`` that utterance ``b``'s output
    steps ``start:stop`` read; a view of ``x``, one piece per utterance, or with ``act``
    their activation (``width`` channels wide, ``C`` unless given), in pieces of at most
    ``CHUNK_BYTES``."""
    B, _, C = x.shape
    row_bytes = (width or C) * x.element_size()
    size = max(1, (CHUNK_BYTES // row_bytes - kernel) // stride + 1) if act else steps
    for b in range(B):
        for start in range(0, steps, size):
            stop = min(start + size, steps)
            rows = x[b, start * stride:(stop - 1) * stride + kernel]
            yield b, start, stop, act(b, rows) if act else rows


def _taps_last(weight: Tensor) -> Tensor:
    """``[C_out, C_in, k]`` -> ``[C_out, k * C_in]``, matching :func:`_window_matrix`."""
    return weight.permute(0, 2, 1).reshape(weight.shape[0], -1)


def _groups(kernel: int, stride: int, width: int) -> list[tuple[int, int]]:
    """:func:`_tap_groups`, or one group of all taps where they are too narrow to split."""
    return _tap_groups(kernel, stride, width) if _splits_taps(width, stride) \
        else [(0, kernel * width)]


def _convolved(x: Tensor, flat: Tensor, kernel: int, stride: int, steps: int,
               act: Activation | WaveBlock | None, width: int) -> Tensor:
    """``[B, steps, C_out]``: the convolution with ``flat`` ``[k * width, C_out]`` of ``x``
    ``[B, T, width]``, or of ``act``'s ``width``-channel activation of ``x``, piece by
    piece (:func:`_pieces`); a product per tap group (:func:`_groups`)."""
    out = x.new_empty(x.shape[0], steps, flat.shape[1])
    groups = _groups(kernel, stride, width)
    for b, start, stop, rows in _pieces(x, kernel, stride, steps, act, width):
        for j, (lo, hi) in enumerate(groups):
            out[b, start:stop].addmm_(_group_view(rows, j, stride, stop - start, hi - lo),
                                      flat[lo:hi], beta=0 if j == 0 else 1)
    return out


def _weight_grad(grad: Tensor, x: Tensor, kernel: int, stride: int,
                 act: Activation | WaveBlock | None, width: int) -> Tensor:
    """The taps-last weight's gradient ``[C_out, k * width]`` for the output's ``grad``
    ``[B, steps, C_out]``, from the input (or its activation) rebuilt piece by piece as in
    :func:`_convolved`, a product per tap group (:func:`_groups`)."""
    steps = grad.shape[1]
    grad_w = grad.new_zeros(grad.shape[-1], kernel * width)
    groups = _groups(kernel, stride, width)
    for b, start, stop, rows in _pieces(x, kernel, stride, steps, act, width):
        part = grad[b, start:stop].t()
        for j, (lo, hi) in enumerate(groups):
            grad_w[:, lo:hi].addmm_(part, _group_view(rows, j, stride, stop - start, hi - lo))
    return grad_w


def _input_grad(grad: Tensor, flat: Tensor, kernel: int, stride: int, length: int) -> Tensor:
    """The input's gradient ``[B, length, C]`` for the output's ``grad`` ``[B, steps,
    C_out]`` and the taps-last weight ``flat`` ``[C_out, k * C]``, written through the tap
    groups' strided views: group 0 covers rows ``[0, steps * stride)`` whole (unless the
    kernel is shorter than the stride) and overwrites them; the other groups add."""
    B, steps, _ = grad.shape
    channels = flat.shape[1] // kernel
    covers = kernel >= stride
    grad_x = grad.new_empty(B, length, channels)
    (grad_x[:, steps * stride:] if covers else grad_x).zero_()
    for b in range(B):
        for j, (lo, hi) in enumerate(_tap_groups(kernel, stride, channels)):
            _group_view(grad_x[b], j, stride, steps, hi - lo).addmm_(
                grad[b], flat[:, lo:hi], beta=0 if j == 0 and covers else 1)
    return grad_x


def _input_grad_rows(grad: Tensor, flat: Tensor, kernel: int, stride: int, lo: int,
                     hi: int) -> Tensor:
    """Rows ``lo:hi`` ``[hi - lo, C]`` of :func:`_input_grad` for one utterance's ``grad``
    ``[steps, C_out]``, from the output steps whose windows reach them (rows beyond the
    last window get zeros)."""
    steps = grad.shape[0]
    first = max(0, -(-(lo - kernel + 1) // stride))
    stop = min(steps, (hi - 1) // stride + 1)
    if first >= stop:
        return grad.new_zeros(hi - lo, flat.shape[1] // kernel)
    base = first * stride
    local = _input_grad(grad[None, first:stop], flat, kernel, stride,
                        (stop - 1 - first) * stride + kernel)[0]
    if base <= lo and hi <= base + len(local):
        return local[lo - base:hi - base]
    rows = grad.new_zeros(hi - lo, local.shape[1])
    start, end = max(lo, base), min(hi, base + len(local))
    rows[start - lo:end - lo] = local[start - base:end - base]
    return rows


class _RowConv(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x: Tensor, weight: Tensor, stride: int, gelu: bool,
                norm_weight: Tensor | None, norm_bias: Tensor | None, eps: float) -> Tensor:
        B, T, C = x.shape
        c_out, _, kernel = weight.shape
        steps = (T - kernel) // stride + 1
        norm_params = () if norm_weight is None else (norm_weight, norm_bias)
        ctx.save_for_backward(x, weight, *norm_params)        # (the params: version checks)
        act = NormedGelu(x, norm_weight, norm_bias, eps) if norm_weight is not None \
            else _Gelu() if gelu else None
        ctx.stride, ctx.act = stride, act
        flat = _taps_last(weight).to(x.dtype).t()                          # [k * C, C_out]
        if not _splits_taps(C, stride):
            return (_windows(x, kernel, stride, act) @ flat).view(B, steps, c_out)
        return _convolved(x, flat, kernel, stride, steps, act, C)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors[:2]
        stride, act = ctx.stride, ctx.act
        needs_x = any(ctx.needs_input_grad[i] for i in (0, 4, 5))   # x, or the norm's params
        B, T, C = x.shape
        c_out, _, kernel = weight.shape
        steps = grad.shape[1]
        grad = grad.contiguous()
        flat = _taps_last(weight).to(grad.dtype)                           # [C_out, k * C]
        grad_x = grad_w = None
        if not _splits_taps(C, stride):
            if ctx.needs_input_grad[1]:
                grad_w = grad.reshape(-1, c_out).t() @ \
                    _windows(x, kernel, stride, act).to(grad.dtype)
            if needs_x:               # overlap-add, one product per tap
                grad_x = x.new_zeros(B, T, C)
                for j in range(kernel):
                    grad_x[:, j:j + stride * (steps - 1) + 1:stride] += \
                        grad @ flat[:, j * C:(j + 1) * C]
        else:
            if ctx.needs_input_grad[1]:
                grad_w = _weight_grad(grad, x, kernel, stride, act, C)
            if needs_x:
                grad_x = _input_grad(grad, flat, kernel, stride, T)
        if grad_w is not None:
            grad_w = grad_w.view(c_out, kernel, C).permute(0, 2, 1).to(weight.dtype)
        grad_norm = (None, None)
        if grad_x is not None and act is not None:     # through the activation, in place
            grad_x, *act_grads = act.backward_(grad_x, x)
            grad_norm = tuple(act_grads) if act_grads else grad_norm
        grad_x = grad_x if ctx.needs_input_grad[0] else None
        return grad_x, grad_w, None, None, *grad_norm, None


def row_conv(x: Tensor, weight: Tensor, stride: int, *, gelu: bool = False,
             norm: tuple[Tensor, Tensor, float] | None = None) -> Tensor:
    """``x`` ``[B, T, C_in]`` (made contiguous), ``weight`` ``[C_out, C_in, k]`` ->
    ``[B, (T - k) // stride + 1, C_out]``, without bias; with ``gelu`` the convolution of
    ``F.gelu(x)``, keeping only ``x`` for backward; with ``norm`` ``(weight [C_in], bias
    [C_in], eps)`` that of ``F.gelu(F.group_norm(x, C_in, weight, bias, eps))`` over each
    utterance's ``T``, keeping ``x`` and its ``[B, C_in]`` statistics."""
    norm_weight, norm_bias, eps = norm if norm is not None else (None, None, 0.0)
    return _RowConv.apply(x.contiguous(), weight, stride, gelu, norm_weight, norm_bias, eps)


class _WaveRowConv(torch.autograd.Function):
    """:func:`row_conv_of` with gradients: keeps no activation, only the waveform's
    :class:`~.wave_block.WaveBlock` (its windows and statistics)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, act: WaveBlock, weight: Tensor, stride: int, *params: Tensor | None
                ) -> Tensor:
        ctx.save_for_backward(weight, *(p for p in params if p is not None))  # version checks
        ctx.act, ctx.stride = act, stride
        return _wave_convolved(act, weight, stride)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        weight = ctx.saved_tensors[0]
        act, stride = ctx.act, ctx.stride
        c_out, width, kernel = weight.shape
        grad = grad.contiguous()
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(grad, act.windows, kernel, stride, act, width) \
                .view(c_out, kernel, width).permute(0, 2, 1)
        first = (None,) * 4
        if any(ctx.needs_input_grad[3:]):
            flat = _taps_last(weight).to(grad.dtype)
            first = act.backward_(lambda b, lo, hi: _input_grad_rows(grad[b], flat, kernel,
                                                                     stride, lo, hi))
        return None, grad_w, None, *first


def _wave_convolved(act: WaveBlock, weight: Tensor, stride: int) -> Tensor:
    """:func:`_convolved` of ``act``'s activation of its windows."""
    rows = act.windows
    kernel = weight.shape[-1]
    steps = (rows.shape[1] - kernel) // stride + 1
    flat = _taps_last(weight).to(rows.dtype).t()                           # [k * C, C_out]
    return _convolved(rows, flat, kernel, stride, steps, act, act.width)


def row_conv_of(act: WaveBlock, weight: Tensor, stride: int) -> Tensor:
    """:func:`row_conv` of ``act``'s activation ``[B, T, C_in]`` of ``act.windows``, without
    that activation whole: each piece of at most ``CHUNK_BYTES`` is computed, convolved and
    dropped (:class:`~.wave_block.WaveBlock`: the conv stack's first block, from the
    waveform). With gradients (a first block with a norm), backward rebuilds the pieces and
    gives the gradients of ``weight`` and of the first block's parameters."""
    params = act.parameters()
    if torch.is_grad_enabled() and any(p is not None and p.requires_grad
                                       for p in (weight, *params)):
        if act.group_norm is None and act.layer_norm is None:
            raise ValueError("row_conv_of trains only a first block with a norm; compute "
                             "a first block without one whole in training")
        return _WaveRowConv.apply(act, weight, stride, *params)
    with torch.no_grad():
        return _wave_convolved(act, weight, stride)
