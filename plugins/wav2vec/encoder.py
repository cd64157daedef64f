"""The wav2vec 1.0 / vq-wav2vec convolutional encoder (fairseq ``ConvFeatureExtractionModel``).

Each block is ``Conv1d(bias=False) -> norm -> activation``, valid
convolutions (no padding), so output frame ``t`` reads samples
``[t*stride, t*stride + receptive_field)``. ``log_compression`` maps the
output to ``log(|x| + 1)``.

Causality of frame features: an output frame is *causal* when it depends on
no input sample at or after the end of its receptive field. The convolutions
alone satisfy this; ``norm: group`` (fairseq parity) does not, because its
statistics span the whole utterance, so :meth:`produces` reports
``causal=False`` for it and ``True`` for ``frame`` and ``none``.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from w2v.config import choice, field, real
from w2v.errors import FitError
from w2v.interfaces import Encoder, EncoderOutput, Signal, waveform_signal

from .layers import ENCODER_PRESETS, ConvLayer, receptive_field, resolve_layers
from .norms import Activation, NormKind, conv_lengths, make_activation, make_norm, valid_mask


@attrs.define(kw_only=True)
class Wav2VecConvEncoderConfig:
    preset: Literal["base", "large", "vq_wav2vec"] | None = choice(
        None, "layer list preset: base (5 layers, the paper), large (+2 1x1 layers), vq_wav2vec "
              "(+3 1x1 layers, fairseq's default); null with no `layers` = base")
    layers: list[tuple[int, int, int]] | None = field(
        None, "conv layers as [[dim, kernel, stride], ...] (instead of `preset`)")
    norm: Literal["group", "frame", "none"] = choice(
        "group", "group: fairseq's GroupNorm(1, C) over channels and time (parity; not causal); "
                 "frame: LayerNorm over channels per frame (causal); none")
    affine_norm: bool = field(True, "learn the norm's per-channel scale and shift (fairseq "
                                    "non_affine_group_norm = not this)")
    activation: Literal["relu", "gelu"] = choice("relu", "activation after each norm")
    log_compression: bool = field(True, "output log(|x| + 1)")
    skip_connections: bool = field(False, "scaled residual around blocks whose width is unchanged")
    residual_scale: float = real(0.5, 0.0, 1.0, "residual sums are multiplied by sqrt(this)")

    def __attrs_post_init__(self) -> None:
        resolve_layers(self.preset, self.layers, ENCODER_PRESETS)


class ConvBlock(nn.Module):
    """``Conv1d(bias=False) -> norm -> activation`` on ``[B, C, T]`` with lengths."""

    def __init__(self, in_dim: int, dim: int, kernel: int, stride: int, norm: NormKind,
                 activation: Activation, affine_norm: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_dim, dim, kernel, stride=stride, bias=False)
        self.norm = make_norm(norm, dim, affine=affine_norm)
        self.activation = make_activation(activation)

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x = self.conv(x)
        lengths = None if lengths is None else conv_lengths(lengths, self.kernel, self.stride)
        return self.activation(self.norm(x, lengths)), lengths


class Wav2VecConvEncoder(Encoder):
    """wav2vec 1.0 conv encoder: waveform ``[B, S]`` -> z ``[B, T, C]`` (stride 160, RF 465 base).

    Built as ``Wav2VecConvEncoder(config, upstream=None)``: every setting comes from
    :class:`Wav2VecConvEncoderConfig` (``layers`` or ``preset`` give the
    ``(dim, kernel, stride)`` list); ``upstream`` is the input signal (a waveform).

    ``norm: group`` is fairseq's (it leaks the future); ``skip_connections`` adds
    ``(x + residual) * sqrt(residual_scale)`` around blocks whose channel count is
    unchanged, the residual being the input subsampled at the block's stride, i.e.
    the first sample of each output window (fairseq subsamples by ``T_in // T_out``,
    which equals the stride once ``T_out > kernel - stride``).
    """

    Config = Wav2VecConvEncoderConfig

    def __init__(self, config: Wav2VecConvEncoderConfig, upstream: Signal | None = None) -> None:
        super().__init__()
        self.layer_spec: list[ConvLayer] = resolve_layers(config.preset, config.layers,
                                                          ENCODER_PRESETS)
        self.norm_kind = config.norm
        self.log_compression = config.log_compression
        self.skip_connections = config.skip_connections
        self.residual_scale = math.sqrt(config.residual_scale)
        self.upstream = upstream or waveform_signal()
        self.receptive_field = receptive_field(self.layer_spec)[0]          # in input samples
        in_dim = 1
        self.blocks = nn.ModuleList()
        for dim, kernel, stride in self.layer_spec:
            self.blocks.append(ConvBlock(in_dim, dim, kernel, stride, config.norm,
                                         config.activation, config.affine_norm))
            in_dim = dim

    @classmethod
    def from_config(cls, config: Wav2VecConvEncoderConfig, upstream: Signal | None = None,
                    **context) -> "Wav2VecConvEncoder":
        if upstream is not None and upstream.kind != "waveform":
            raise FitError(f"the wav2vec conv encoder reads raw audio, but its input is "
                           f"{upstream.describe()}.")
        return cls(config, upstream)

    def compile_regions(self) -> list[nn.Module]:
        """The conv blocks, for regional ``torch.compile`` (``trainer.compile``). The log
        compression after them stays eager: compiled into one graph with the last block,
        ``log1p`` gave NaN gradients under bf16 autocast on CPU (inductor, torch 2.9.1),
        where eager mode and ``aot_eager`` gave finite ones."""
        return list(self.blocks)

    def produces(self) -> Signal:
        sig = self.upstream
        for dim, kernel, stride in self.layer_spec:
            sig = sig.then(kind="frames", dim=dim, stride=stride, receptive_field=kernel)
        return attrs.evolve(sig, causal=self.upstream.causal and self.norm_kind != "group")

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for _, kernel, stride in self.layer_spec:
            lengths = conv_lengths(lengths, kernel, stride)
        return lengths

    def forward(self, source: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``source`` [B, S] -> :class:`EncoderOutput` with ``features`` [B, T, C]."""
        if source.shape[-1] < self.receptive_field:             # no frame fits
            lengths = None if lengths is None else torch.zeros_like(lengths)
            return EncoderOutput(features=source.new_zeros(source.shape[0], 0,
                                                           self.layer_spec[-1][0]),
                                 lengths=lengths)
        x = source.unsqueeze(1)
        for block in self.blocks:
            residual = x
            x, lengths = block(x, lengths)
            if self.skip_connections and x.shape[1] == residual.shape[1]:
                residual = residual[..., ::block.stride][..., :x.shape[-1]]
                x = (x + residual) * self.residual_scale
        if self.log_compression:
            x = torch.log1p(x.abs())
        if lengths is not None:
            x = x * valid_mask(lengths, x.shape[-1]).to(x.dtype)
        return EncoderOutput(features=x.transpose(1, 2), lengths=lengths)
