"""The conv encoder's first block at inference, computed from the waveform piece by piece.

The first block of wav2vec 2.0's conv stack turns the one-channel waveform into C channels
at a fifth of the sample rate: 64 MB per 10 s of audio at BASE, the largest tensor of
feature extraction. At inference on CPU the second block's :func:`~.row_conv.row_conv_of`
reads that block's activation through a :class:`WaveBlock` instead: each piece of rows it
convolves (at most 16 MiB) is one product of the waveform's windows ``[n, k]`` with the
block's weight, then the block's norm and GELU. The whole output is never written, so the
process takes no fresh pages from the kernel for it either (on the virtual machines
measured, first-touch page faults cost about 15 ms per 64 MB, more than the product).

A GroupNorm over time needs no pass over the output for its statistics: the convolution is
linear in the windows, so each channel's mean is its weight row times the windows' mean,
and its variance the weight row's quadratic form with the windows' ``[k, k]`` covariance
(computed in fp64). The norm's scale folds into the weight and its shift into the
product's bias. The bias of the convolution cancels in the norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class WaveBlock:
    """``GELU(norm(conv(wave) + bias))`` of a one-channel first conv block in eval mode,
    as :func:`~.row_conv.row_conv_of`'s activation of the waveform's windows.

    ``wave`` ``[B, S]``; ``weight`` ``[C, 1, k]``; ``norm`` a ``GroupNorm(C, C)`` (over each
    utterance's time), a ``LayerNorm(C)`` (over channels) or None. :attr:`windows`
    ``[B, T, k]`` (a view, ``T = (S - k) // stride + 1``) are the rows it activates:
    ``self(b, windows[b, i:j])`` is rows ``i:j`` of utterance ``b``'s activation ``[j - i, C]``.
    """

    def __init__(self, wave: Tensor, weight: Tensor, bias: Tensor | None, stride: int,
                 norm: nn.Module | None) -> None:
        channels, _, kernel = weight.shape
        self.windows = wave.unfold(-1, kernel, stride)                       # [B, T, k]
        self.width = channels
        flat = weight.reshape(channels, kernel)                              # [C, k]
        self.layer_norm = norm if isinstance(norm, nn.LayerNorm) else None
        if isinstance(norm, nn.GroupNorm):
            scale, shift = self._group_norm(flat, norm)                      # [B, C] each
            self.weight = (flat.t()[None] * scale[:, None]).to(wave.dtype)   # [B, k, C]
            self.shift = shift.to(wave.dtype)
        else:
            self.weight = flat.t().expand(len(wave), kernel, channels)
            self.shift = (bias if bias is not None else flat.new_zeros(channels)) \
                .expand(len(wave), channels)

    def _group_norm(self, flat: Tensor, norm: nn.GroupNorm) -> tuple[Tensor, Tensor]:
        """Per utterance and channel, ``scale`` and ``shift`` ``[B, C]`` (fp64) with
        ``norm(conv(w) + bias) = (flat @ w) * scale + shift`` for every window ``w``."""
        windows = self.windows.double()
        mean = windows.mean(1)                                               # [B, k]
        centred = windows - mean[:, None]
        covariance = centred.transpose(1, 2) @ centred / windows.shape[1]    # [B, k, k]
        w = flat.double()
        variance = ((covariance @ w.t()) * w.t()).sum(1)                     # [B, C]
        scale = (variance + norm.eps).rsqrt() * norm.weight.double()
        return scale, norm.bias.double() - (mean @ w.t()) * scale

    def __call__(self, b: int, rows: Tensor) -> Tensor:
        """The activation ``[n, C]`` of utterance ``b``'s windows ``rows`` ``[n, k]``."""
        out = torch.addmm(self.shift[b], rows, self.weight[b])
        if self.layer_norm is not None:
            norm = self.layer_norm
            out = F.layer_norm(out, out.shape[-1:], norm.weight, norm.bias, norm.eps)
        return torch.ops.aten.gelu_(out)
