"""Convolutional relative positional embedding of the wav2vec 2.0 context network.

``[B, T, D] -> [B, T, D]`` (added to the input by the caller). fairseq
``make_conv_pos``: a grouped ``Conv1d(D, D, K, groups)`` with weight
normalisation over dim 2 (``g`` has shape ``[1, 1, K]``), "same" padding (for
even K the last output frame is dropped, i.e. padding ``K//2`` left and
``K//2 - 1`` right), then GELU. With ``depth > 1`` (fairseq ``pos_conv_depth``,
data2vec style) it is ``depth`` blocks of ``Conv1d(k) -> LayerNorm (no affine) ->
GELU`` with ``k = max(3, K // depth)`` and no weight norm.

On CPU in fp32, once the batch is long enough, the weight-normed conv runs through the FFT
(:func:`~w2v.plugins.wav2vec2.fft_conv.fft_conv`, equal up to rounding).

``causal=True`` pads ``K - 1`` frames on the left only, so frame ``t`` sees
frames ``t-K+1 .. t``. The caller zeroes padded frames before this module
(``forward(x [B, T, D], padding [B, T] | None)``).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .fft_conv import fft_conv, pays_off


def _pad(x: Tensor, kernel: int, causal: bool) -> Tensor:
    """``[B, D, T]`` padded so a valid conv of ``kernel`` returns ``T`` frames."""
    left = kernel - 1 if causal else kernel // 2
    return F.pad(x, (left, kernel - 1 - left))


class ConvPositionalEmbedding(nn.Module):
    """Weight-normed grouped conv + GELU (``depth`` 1), see the module docstring.

    Parameters: ``conv.bias`` ``[D]``, ``conv.parametrizations.weight.original0`` (g,
    ``[1, 1, K]``) and ``.original1`` (v, ``[D, D/groups, K]``).
    """

    def __init__(self, dim: int, kernel: int, groups: int, *, causal: bool = False) -> None:
        super().__init__()
        self.kernel, self.causal = kernel, causal
        conv = nn.Conv1d(dim, dim, kernel, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
        nn.init.zeros_(conv.bias)
        self.conv = weight_norm(conv, name="weight", dim=2)

    def forward(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        z = _pad(x.transpose(1, 2), self.kernel, self.causal)                  # [B, D, L]
        if pays_off(z, self.kernel):
            y = fft_conv(z, self.conv.weight, self.conv.groups) + self.conv.bias[:, None]
        else:
            y = self.conv(z)
        return F.gelu(y).transpose(1, 2)


class StackedConvPositionalEmbedding(nn.Module):
    """``depth`` blocks of ``Conv1d(k) -> LayerNorm(no affine) -> GELU`` (fairseq ``pos_conv_depth > 1``).

    Parameters: ``convs.{j}.weight`` ``[D, D/groups, k]`` and ``convs.{j}.bias``.
    """

    def __init__(self, dim: int, kernel: int, groups: int, depth: int, *,
                 causal: bool = False) -> None:
        super().__init__()
        self.kernel = max(3, kernel // depth)
        self.causal = causal
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, self.kernel, groups=groups)
                                   for _ in range(depth))

    def forward(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        """``padding`` ``[B, T]`` (True = padded): re-zeroed between blocks so padded frames
        never reach valid ones (fairseq lets them, so padded batches differed from single
        utterances there)."""
        for i, conv in enumerate(self.convs):
            if i and padding is not None:
                x = x.masked_fill(padding[..., None], 0.0)
            y = conv(_pad(x.transpose(1, 2), self.kernel, self.causal)).transpose(1, 2)
            x = F.gelu(F.layer_norm(y, y.shape[-1:]))
        return x


def positional_embedding(dim: int, kernel: int, groups: int, depth: int = 1, *,
                         causal: bool = False) -> nn.Module | None:
    """The positional conv for ``depth`` (0: none, 1: weight-normed conv, > 1: stacked)."""
    if depth == 0:
        return None
    if depth == 1:
        return ConvPositionalEmbedding(dim, kernel, groups, causal=causal)
    return StackedConvPositionalEmbedding(dim, kernel, groups, depth, causal=causal)
