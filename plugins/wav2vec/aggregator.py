"""The wav2vec 1.0 causal conv context network (fairseq ``ConvAggegator``).

Each block is ``causal left pad (k-1) -> Conv1d -> Dropout -> norm ->
activation``; with ``skip_connections`` its output becomes
``(block(x) + residual) * sqrt(residual_scale)``, where ``residual`` is the
block input, passed through a bias-free 1x1 conv when the width changes
(exactly fairseq's rule: the residual is added after the activation, every
block, and the sum is scaled). Padding replicates the first frame by default
(fairseq ``agg_zero_pad=False``) or inserts zeros.

Causality: the wiring never lets frame ``t`` see frames after ``t``
(:attr:`structurally_causal` is True), but ``norm: group`` normalises over
the whole utterance, so :meth:`produces` reports ``causal=False`` for it, as
for any non-causal upstream.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import attrs
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import choice, field, real
from w2v.interfaces import Aggregator, AggregatorOutput, Signal, last_block, upstream_dim

from .layers import AGGREGATOR_PRESETS, ConvLayer, resolve_layers
from .norms import Activation, NormKind, make_activation, make_norm, valid_mask


@attrs.define(kw_only=True)
class ConvAggregatorConfig:
    preset: Literal["base", "large"] | None = choice(
        None, "layer list preset: base (9 x (512, 3, 1), the paper) or large ((512, k, 1) for "
              "k = 2..13); null with no `layers` = base")
    layers: list[tuple[int, int, int]] | None = field(
        None, "conv layers as [[dim, kernel, 1], ...] (instead of `preset`); stride must be 1")
    norm: Literal["group", "frame", "none"] = choice(
        "group", "group: fairseq's GroupNorm(1, C) over channels and time (parity; not causal); "
                 "frame: LayerNorm over channels per frame (causal); none")
    affine_norm: bool = field(True, "learn the norm's per-channel scale and shift")
    activation: Literal["relu", "gelu"] = choice("relu", "activation after each norm")
    conv_bias: bool = field(True, "bias in the convolutions (fairseq no_conv_bias = not this)")
    zero_pad: bool = field(False, "causal left padding with zeros instead of replicating the "
                                  "first frame (fairseq agg_zero_pad)")
    skip_connections: bool = field(True, "scaled residual around every block (fairseq "
                                         "skip_connections_agg, default on)")
    residual_scale: float = real(0.5, 0.0, 1.0, "residual sums are multiplied by sqrt(this)")
    dropout: float = real(0.0, 0.0, 1.0, "dropout after each convolution")

    def __attrs_post_init__(self) -> None:
        resolve_layers(self.preset, self.layers, AGGREGATOR_PRESETS, stride_one=True)


class CausalConvBlock(nn.Module):
    """``left pad (k-1) -> Conv1d -> Dropout -> norm -> activation`` on ``[B, C, T]``."""

    def __init__(self, in_dim: int, dim: int, kernel: int, *, norm: NormKind,
                 activation: Activation, affine_norm: bool, conv_bias: bool, zero_pad: bool,
                 dropout: float) -> None:
        super().__init__()
        self.pad = kernel - 1
        self.pad_mode = "constant" if zero_pad else "replicate"
        self.conv = nn.Conv1d(in_dim, dim, kernel, bias=conv_bias)
        self.dropout = nn.Dropout(dropout)
        self.norm = make_norm(norm, dim, affine=affine_norm)
        self.activation = make_activation(activation)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        if self.pad:
            x = F.pad(x, (self.pad, 0), mode=self.pad_mode)
        x = self.dropout(self.conv(x))
        return self.activation(self.norm(x, lengths))


class ConvAggregator(Aggregator):
    """Causal conv context network: ``x [B, T, input_dim] -> c [B, T, layers[-1].dim]``.

    Built as ``ConvAggregator(config, input_dim, upstream=None)``: every setting comes
    from :class:`ConvAggregatorConfig` (``layers`` or ``preset`` give the
    ``(dim, kernel, 1)`` list); ``input_dim`` is the upstream frames' width and
    ``upstream`` their signal (for :meth:`produces`), both wiring.
    """

    Config = ConvAggregatorConfig
    #: The wiring (left padding) never lets frame t read frames after t; only the
    #: ``group`` norm's utterance statistics do. See the module docstring.
    structurally_causal = True

    def __init__(self, config: ConvAggregatorConfig, input_dim: int,
                 upstream: Signal | None = None) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.layer_spec: list[ConvLayer] = resolve_layers(config.preset, config.layers,
                                                          AGGREGATOR_PRESETS, stride_one=True)
        self.norm_kind = config.norm
        self.skip_connections = config.skip_connections
        self.residual_scale = math.sqrt(config.residual_scale)
        self.upstream = upstream or Signal(kind="frames", dim=input_dim)
        self.blocks = nn.ModuleList()
        self.residual_proj = nn.ModuleList()
        in_dim = input_dim
        for dim, kernel, _ in self.layer_spec:
            self.blocks.append(CausalConvBlock(
                in_dim, dim, kernel, norm=config.norm, activation=config.activation,
                affine_norm=config.affine_norm, conv_bias=config.conv_bias,
                zero_pad=config.zero_pad, dropout=config.dropout))
            needs_proj = config.skip_connections and in_dim != dim
            self.residual_proj.append(nn.Conv1d(in_dim, dim, 1, bias=False) if needs_proj
                                      else nn.Identity())
            in_dim = dim

    @classmethod
    def from_config(cls, config: ConvAggregatorConfig, upstream: Signal | None = None,
                    **context) -> "ConvAggregator":
        return cls(config, upstream_dim(upstream, "conv aggregator"), upstream)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def produces(self) -> Signal:
        span = 1 + sum(kernel - 1 for _, kernel, _ in self.layer_spec)
        return self.upstream.then(kind="frames", dim=self.layer_spec[-1][0],
                                  receptive_field=span, causal=self.norm_kind != "group")

    def forward(self, x: Tensor, lengths: Tensor | None = None,
                layers: int | Sequence[int] | None = None) -> AggregatorOutput:
        """``x`` [B, T, input_dim] -> :class:`AggregatorOutput` (``output`` [B, T, D])."""
        last = last_block(layers, len(self.blocks))
        mask = None if lengths is None else valid_mask(lengths, x.shape[1]).to(x.dtype)
        h = x.transpose(1, 2)
        outputs = []
        for block, proj in list(zip(self.blocks, self.residual_proj))[:last + 1]:
            y = block(h, lengths)
            if self.skip_connections:
                y = (y + proj(h)) * self.residual_scale
            h = y
            outputs.append(h if mask is None else h * mask)
        return AggregatorOutput(output=outputs[-1].transpose(1, 2),
                                layers=[o.transpose(1, 2) for o in outputs], lengths=lengths)
