"""Dropout with cheaper CPU masks than torch's: 16 random bits per element, kept as bools.

On CPU, ``F.dropout`` draws one Bernoulli sample per element and keeps a float mask for
the backward. :func:`dropout` draws 64 bits per four elements (``random_``) and keeps a
``bool`` mask, applied as ``(x * keep) * scale`` (a dropped NaN stays NaN, as with
``F.dropout``). The saved mask is a quarter of an fp32 one; forward + backward times
against ``F.dropout`` are in ``tests/benchmarks/bench_dropout.py``.

The drop probability is ``p`` rounded to a multiple of 2^-16 (0.1 becomes 0.1000061), and
kept elements are scaled by ``1 / (1 - p_rounded)``, so the output stays unbiased. Masks
come from torch's generator, so ``torch.manual_seed`` and activation checkpointing's
replay reproduce them. Other devices use ``F.dropout``, whose GPU kernel is already fused.

:func:`dropout_matmul` is ``dropout(x) @ other`` for a matrix product that follows the
dropout (attention weights times values): it keeps ``x`` and the mask for backward and
recomputes the dropped copy there, so the copy (as large as ``x``) is not held between
forward and backward. Attention's ``x`` is the softmax output, which the softmax keeps
anyway.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the mask's resolution: drop probabilities are multiples of 1 / LEVELS
LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float,
              device: torch.device | str = "cpu") -> Tensor:
    """``bool`` tensor of ``shape``, False (drop) with probability ``round(p * 2^16) / 2^16``.

    Compiled (``trainer.compile``), one ``randint`` below 2^16 per element, the same
    probability: dynamo cannot trace ``random_``, and each graph break it made split a
    Transformer block and recompiled on every call. Compiled masks come from inductor's
    generator, so they differ from eager ones anyway."""
    if torch.compiler.is_compiling():
        return torch.randint(LEVELS, tuple(shape), device=device, dtype=torch.int32) \
            >= round(p * LEVELS)
    n = math.prod(shape)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None)
    return bits.view(torch.int16)[:n].view(shape) >= (round(p * LEVELS) - LEVELS // 2)


def _kept_and_scaled(x: Tensor, keep: Tensor, scale: float, in_place: bool = False) -> Tensor:
    """``(x * keep) * scale`` (``keep`` bool), into ``x`` itself with ``in_place``. Eagerly
    the mask is read as ``uint8``: torch's CPU product casts that on the fly, where a bool
    operand (or ``addcmul`` with a scalar first term) costs 2-6 x as long on an attention
    map. Compiled (``trainer.compile``), the product stays bool: inductor fuses the cast,
    and it cannot lower a bool tensor's ``uint8`` view."""
    if not torch.compiler.is_compiling():
        keep = keep.view(torch.uint8)
    return (x.mul_(keep) if in_place else x * keep).mul_(scale)


class _KeepScale(torch.autograd.Function):
    """``x`` with the elements ``keep`` marks multiplied by ``scale``, the rest zeroed."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return _kept_and_scaled(x, keep, scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        keep, = ctx.saved_tensors
        return _kept_and_scaled(grad, keep, ctx.scale), None, None


class _KeepScaleMatmul(torch.autograd.Function):
    """``(x * keep * scale) @ other``, keeping ``x``, ``keep`` and ``other`` for backward
    (not the product ``x * keep * scale``). The arithmetic is the unfused pair's, also
    under CPU autocast (whose state backward replays)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x: Tensor, keep: Tensor, scale: float, other: Tensor) -> Tensor:
        ctx.save_for_backward(x, keep, other)
        ctx.scale = scale
        return _kept_and_scaled(x, keep, scale) @ other

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        x, keep, other = ctx.saved_tensors
        grad_x = grad_other = None
        if ctx.needs_input_grad[3]:
            grad_other = _kept_and_scaled(x, keep, ctx.scale).mT @ grad
        if ctx.needs_input_grad[0]:
            grad_x = _kept_and_scaled((grad @ other.mT).to(x.dtype), keep, ctx.scale,
                                      in_place=True)
        return grad_x, None, None, grad_other


def _levels(p: float) -> int:
    """``p`` in units of ``1 / LEVELS``, the mask's resolution."""
    return round(p * LEVELS)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout of ``x`` (any shape), as ``F.dropout(x, p, training)``."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    levels = _levels(p)
    if levels == 0:
        return x
    if levels >= LEVELS:
        return x * 0.0
    return _KeepScale.apply(x, keep_mask(x.shape, p, x.device), LEVELS / (LEVELS - levels))


def dropout_matmul(x: Tensor, other: Tensor, p: float, training: bool = True) -> Tensor:
    """``dropout(x, p, training) @ other`` (the same mask and result) for ``x`` ``[*, n, m]``
    and ``other`` ``[*, m, k]`` with equal batch dimensions; on CPU the dropped copy of
    ``x`` is recomputed in backward instead of kept."""
    levels = _levels(p)
    if not training or levels == 0 or levels >= LEVELS or x.device.type != "cpu":
        return dropout(x, p, training) @ other
    return _KeepScaleMatmul.apply(x, keep_mask(x.shape, p, x.device),
                                  LEVELS / (LEVELS - levels), other)


class Dropout(nn.Dropout):
    """``nn.Dropout`` computed by :func:`dropout` (same attribute ``p``, same state dict)."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
