"""Normalisations of wav2vec 1.0 conv blocks, length-aware, computed in fp32.

All modules take channels-first activations ``x [B, C, T]`` and ``lengths
[B]`` (valid frames, or None) and return ``[B, C, T]`` in the input dtype.

* ``group``: fairseq's ``Fp32GroupNorm(1, C)``: one mean and variance per
  utterance over channels *and time*, then a per-channel affine. Statistics
  span the whole utterance, so every output frame depends on future input
  (the "normalisation leak" of wav2vec 1.0). With ``lengths`` the statistics
  cover valid frames only, so an utterance gives the same valid frames alone
  or padded in a batch (fairseq, which crops batches to one length, never
  pads; without padding both agree).
* ``frame``: LayerNorm over channels of each frame: causal.
* ``none``: identity.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormKind = Literal["group", "frame", "none"]
Activation = Literal["relu", "gelu"]


def valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[B, 1, T]`` float mask, 1 at valid frames."""
    steps = torch.arange(max_len, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).unsqueeze(1).float()


def conv_lengths(lengths: Tensor, kernel: int, stride: int) -> Tensor:
    """Valid frames after a valid (unpadded) convolution of ``lengths`` valid inputs."""
    return (torch.div(lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)


class UtteranceGroupNorm(nn.Module):
    """``GroupNorm(1, C)`` in fp32 with statistics over each utterance's valid frames."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        xf = x.float()
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        if lengths is None:
            return F.group_norm(xf, 1, w, b, self.eps).to(x.dtype)
        mask = valid_mask(lengths, x.shape[-1])                          # [B, 1, T]
        count = (lengths.clamp(min=1) * x.shape[1]).float()[:, None, None]
        mean = (xf * mask).sum((1, 2), keepdim=True) / count
        var = (((xf - mean) * mask) ** 2).sum((1, 2), keepdim=True) / count
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        if w is not None:
            y = y * w[:, None] + b[:, None]
        return y.to(x.dtype)


class FrameLayerNorm(nn.Module):
    """LayerNorm over the channels of each frame, in fp32 (causal)."""

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps, elementwise_affine=affine)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        w = None if self.norm.weight is None else self.norm.weight.float()
        b = None if self.norm.bias is None else self.norm.bias.float()
        y = F.layer_norm(x.float().transpose(1, 2), self.norm.normalized_shape, w, b, self.norm.eps)
        return y.transpose(1, 2).to(x.dtype)


class NoNorm(nn.Module):
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return x


def make_norm(kind: NormKind, channels: int, affine: bool = True) -> nn.Module:
    if kind == "group":
        return UtteranceGroupNorm(channels, affine=affine)
    if kind == "frame":
        return FrameLayerNorm(channels, affine=affine)
    return NoNorm()


def make_activation(kind: Activation) -> nn.Module:
    return nn.GELU() if kind == "gelu" else nn.ReLU()
