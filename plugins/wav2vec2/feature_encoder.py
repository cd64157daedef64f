"""wav2vec 2.0's convolutional feature encoder: waveform ``[B, S]`` -> local features ``[B, T, C]``.

A stack of valid (unpadded) strided ``Conv1d -> dropout -> [norm] -> GELU``
blocks (fairseq ``ConvFeatureExtractionModel``), then the feature LayerNorm
(fairseq ``layer_norm``, Hugging Face ``feature_projection.layer_norm``). The
output is what quantizers and targets see (Hugging Face ``extract_features``).

Two normalisation modes:

* ``group_norm`` (fairseq ``default``, BASE): ``GroupNorm(C, C)`` after the first
  conv only. It normalises every channel over the *whole time axis*, so each
  frame depends on the entire utterance (not causal), and in a zero-padded
  batch the statistics include the padding: an utterance's features change
  with the length it is padded to (fairseq#3227, transformers#21534). Padded
  input samples are zeroed first, so the result equals running that utterance
  alone after appending zeros. ``group_norm_padding: exclude`` computes the
  statistics over valid frames only, which makes padded batches match
  single-utterance outputs (a w2v extension; checkpoints were trained with
  ``include``).
* ``layer_norm`` (LARGE): LayerNorm over channels in every block. Every output
  frame ``t`` depends only on input samples ``[t*stride, t*stride + receptive_field)``,
  so valid frames are the same alone or padded in a batch, and no frame
  depends on later input than its window: the encoder is causal in the sense
  of :class:`w2v.interfaces.Signal` (its frame is stamped at the window end).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import check, choice, field, real
from w2v.dropout import Dropout
from w2v.errors import DataError, FitError
from w2v.interfaces import Encoder, EncoderOutput, Signal, lengths_to_padding_mask, waveform_signal
from w2v.recompute import recomputed

from .channel_norm import channel_norm, channel_norm_gelu_
from .row_conv import row_conv, row_conv_of
from .wave_block import WaveBlock

#: fairseq's ``conv_feature_layers``: stride 320 (20 ms at 16 kHz), receptive field 400 samples.
DEFAULT_CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2)

NormMode = Literal["group_norm", "layer_norm"]


@attrs.define(kw_only=True)
class Wav2Vec2FeatureEncoderConfig:
    conv_layers: list[tuple[int, int, int]] = field(
        list(DEFAULT_CONV_LAYERS), "conv blocks as (channels, kernel, stride); the last "
                                   "block's channels are the feature width C")
    mode: NormMode = choice(
        "group_norm", "group_norm: GroupNorm(C, C) in the first block only (fairseq `default`, "
                      "BASE; normalises over time, not causal); layer_norm: LayerNorm over "
                      "channels in every block (LARGE)")
    conv_bias: bool = field(False, "bias in the convolutions (True for LARGE)")
    feature_grad_mult: float = real(1.0, 0.0, 1000.0, "scales gradients flowing into the conv "
                                                      "stack; 0 runs it without gradients")
    dropout: float = real(0.0, 0.0, 1.0, "dropout after each convolution")
    layer_norm_eps: float = real(1e-5, 0.0, 1.0, "epsilon of the feature LayerNorm")
    group_norm_padding: Literal["include", "exclude"] = choice(
        "include", "group_norm mode with padded batches: include the (zeroed) padding in the "
                   "GroupNorm statistics as fairseq and Hugging Face do, or exclude it so a padded "
                   "utterance gets the features it gets alone")
    fairseq_compat: bool = field(False, "feature penalty over every conv frame, padded ones "
                                        "included, as fairseq (default: valid frames only)")

    def __attrs_post_init__(self) -> None:
        check(1 <= len(self.conv_layers) <= 32, "conv_layers",
              f"expected 1 to 32 conv blocks, found {len(self.conv_layers)}.")
        for i, block in enumerate(self.conv_layers):
            check(len(block) == 3, f"conv_layers.{i}",
                  f"expected (channels, kernel, stride), found {list(block)}.")
            dim, kernel, stride = block
            check(1 <= dim <= 16384, f"conv_layers.{i}", f"channels must be 1..16384, found {dim}.")
            check(1 <= kernel <= 4096, f"conv_layers.{i}", f"kernel must be 1..4096, found {kernel}.")
            check(1 <= stride <= 4096, f"conv_layers.{i}", f"stride must be 1..4096, found {stride}.")


class _GradMultiply(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` (fairseq ``GradMultiply``)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


def grad_multiply(x: Tensor, scale: float) -> Tensor:
    return x if scale == 1.0 else _GradMultiply.apply(x, scale)


def masked_group_norm(x: Tensor, valid: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """Per-channel normalisation over valid steps only.

    ``x`` ``[B, C, T]`` or ``[B, C, 1, T]``, ``valid`` ``[B, T]`` bool; equals
    ``GroupNorm(C, C)`` when all steps are valid. Computed in fp32.
    """
    xf = x.float()
    w = valid.view(valid.shape[0], *([1] * (x.dim() - 2)), valid.shape[1]).to(xf.dtype)
    n = w.sum(-1, keepdim=True).clamp(min=1.0)
    mean = (xf * w).sum(-1, keepdim=True) / n
    var = (((xf - mean) * w) ** 2).sum(-1, keepdim=True) / n
    y = (xf - mean) * torch.rsqrt(var + eps)
    per_channel = (-1,) + (1,) * (x.dim() - 2)
    return (y * weight.float().view(per_channel) + bias.float().view(per_channel)).type_as(x)


def runs_channels_last(x: Tensor) -> bool:
    """Whether the conv stack runs on ``[B, C, 1, T]`` tensors in channels-last memory, which
    is ``[B, T, C]`` rows: on CPU. There oneDNN's convolutions, fed ``[B, C, T]``, reorder
    every activation and gradient in and out. In that layout fp32 convolutions are
    :func:`row_conv`'s matrix products (oneDNN's channels-last backward is slow, and its
    forward was 16 % slower on the CPU measured) and bf16 ones oneDNN's channels-last
    convolutions (docs/benchmarks.md). GPUs keep the plain layout."""
    return x.device.type == "cpu"


def computes_in_bf16(x: Tensor) -> bool:
    """Whether convolutions of ``x`` run in bf16: under bf16 autocast, or a bf16 tensor."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type) == torch.bfloat16
    return x.dtype == torch.bfloat16


class ConvBlock(nn.Module):
    """``Conv1d -> dropout -> [GroupNorm | LayerNorm over channels] -> GELU``.

    ``[B, C_in, S] -> [B, C_out, floor((S - kernel) / stride) + 1]``. Norms run in fp32.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel: int, stride: int, *, bias: bool,
                 norm: Literal["group", "layer"] | None, dropout: float = 0.0) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_dim, out_dim, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.dropout = Dropout(dropout)
        self.norm_kind = norm
        if norm == "group":
            self.norm: nn.Module | None = nn.GroupNorm(out_dim, out_dim, affine=True)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_dim, elementwise_affine=True)
        else:
            self.norm = None

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return (torch.div(lengths - self.kernel, self.stride, rounding_mode="floor") + 1).clamp(min=0)

    def _conv(self, x: Tensor, gelu_input: bool = False,
              norm_input: nn.GroupNorm | None = None,
              first_block: ConvBlock | None = None) -> Tensor:
        """The convolution, in ``x``'s form. On ``[B, C_in, 1, S]`` channels-last tensors:
        one input channel is a matmul over strided windows, whose ``[B, T, C]`` result is
        already channels-last (a conv2d there would return the plain layout); fp32 is
        :func:`row_conv`; bf16 is oneDNN's channels-last conv2d.
        With ``gelu_input`` it convolves ``F.gelu(x)``, with ``norm_input`` the GELU of that
        GroupNorm of ``x``: inside :func:`row_conv`, which then keeps only ``x`` (and the
        norm's statistics) for backward, or applied first on the other paths.
        With ``first_block`` (fp32 on CPU), ``x`` is the waveform ``[B, 1, 1, S]`` and this
        block convolves ``first_block``'s activation of it, computed piece by piece
        (:class:`~.wave_block.WaveBlock`); ``first_block``'s output never exists whole."""
        if first_block is not None:
            first = WaveBlock(x.flatten(1), first_block.conv.weight, first_block.conv.bias,
                              first_block.stride, first_block.norm)
            rows = row_conv_of(first, self.conv.weight, self.stride)
            if self.conv.bias is not None:
                rows += self.conv.bias
            return rows.transpose(1, 2).unsqueeze(2)
        if x.dim() == 4 and x.shape[1] > 1 and not computes_in_bf16(x):
            norm = None if norm_input is None else \
                (norm_input.weight, norm_input.bias, norm_input.eps)
            rows = row_conv(x.squeeze(2).transpose(1, 2), self.conv.weight, self.stride,
                            gelu=gelu_input, norm=norm)
            if self.conv.bias is not None:
                rows = rows + self.conv.bias
            return rows.transpose(1, 2).unsqueeze(2)
        if norm_input is not None:
            x = channel_norm(x, norm_input.weight, norm_input.bias, norm_input.eps, gelu=True)
        elif gelu_input:
            x = F.gelu(x)
        if x.dim() == 3:
            return self.conv(x)
        if x.shape[1] == 1:
            windows = x.flatten(1).unfold(-1, self.kernel, self.stride)         # [B, T, k]
            return F.linear(windows, self.conv.weight.flatten(1),
                            self.conv.bias).transpose(1, 2).unsqueeze(2)
        weight = self.conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, self.conv.bias, stride=(1, self.stride))

    def forward(self, x: Tensor, valid: Tensor | None = None, *, gelu_input: bool = False,
                norm_input: nn.GroupNorm | None = None, first_block: ConvBlock | None = None,
                activate: bool = True) -> Tensor:
        """``x`` ``[B, C_in, S]``, or ``[B, C_in, 1, S]`` in channels-last memory (the CPU
        path, see :func:`runs_channels_last`); the output keeps the input's form.
        ``valid`` ``[B, T_out]`` (only used by a GroupNorm that excludes padding). Without
        gradients the CPU path normalises and activates the convolution's output in place.
        ``gelu_input``: ``x`` is the previous block's output before its GELU, which this
        block applies (``norm_input``: before the GroupNorm and GELU of the block that
        ``norm_input`` belongs to); ``activate=False`` leaves this block's GELU, and its
        GroupNorm if it has one, to the next block in the same way. ``first_block``: ``x`` is
        the waveform, and ``first_block`` the stack's first block, which this one computes
        (see :meth:`_conv`)."""
        x = self.dropout(self._conv(x, gelu_input, norm_input, first_block))
        in_place = x.dim() == 4 and not x.requires_grad            # x is this block's own
        norm = self.norm
        if self.norm_kind == "group":
            if not activate and valid is None:
                return x
            if valid is not None:
                x = masked_group_norm(x, valid, norm.weight, norm.bias, norm.eps)
            elif in_place and x.dtype == torch.float32:
                return channel_norm_gelu_(x, norm.weight, norm.bias, norm.eps)
            elif x.dim() == 4:
                return channel_norm(x, norm.weight, norm.bias, norm.eps, gelu=True)
            else:
                x = F.group_norm(x.float(), x.shape[1], norm.weight.float(), norm.bias.float(),
                                 norm.eps).type_as(x)
        elif self.norm_kind == "layer":
            x = F.layer_norm(x.movedim(1, -1).float(), x.shape[1:2], norm.weight.float(),
                             norm.bias.float(), norm.eps).type_as(x).movedim(-1, 1)
        elif not activate:
            return x
        return torch.ops.aten.gelu_(x) if in_place else F.gelu(x)


class Wav2Vec2FeatureEncoder(Encoder):
    """wav2vec 2.0 conv feature encoder + feature LayerNorm (see the module docstring).

    ``forward(source [B, S], lengths [B] | None) -> EncoderOutput`` with
    ``features`` ``[B, T, C]`` after the feature LayerNorm (padded frames zero),
    ``lengths`` the valid frames and ``penalty`` the mean squared conv output
    (before the LayerNorm, over valid frames, fp32): wav2vec 2.0's feature penalty.
    With ``fairseq_compat`` the mean runs over every frame of the padded batch, as
    fairseq's ``features.float().pow(2).mean()`` does (the frames of the zero padding
    count, so the term depends on how much padding a batch has).
    """

    Config = Wav2Vec2FeatureEncoderConfig

    def __init__(self, config: Wav2Vec2FeatureEncoderConfig,
                 upstream: Signal | None = None) -> None:
        super().__init__()
        mode = config.mode
        if mode not in ("group_norm", "layer_norm"):
            raise ValueError(f"mode must be group_norm or layer_norm, found {mode!r}")
        self.fairseq_compat = config.fairseq_compat
        self.conv_config = [tuple(int(v) for v in block) for block in config.conv_layers]
        self.mode = mode
        self.feature_grad_mult = config.feature_grad_mult
        self.group_norm_padding = config.group_norm_padding
        blocks = []
        in_dim = 1
        for i, (dim, kernel, stride) in enumerate(self.conv_config):
            norm = "layer" if mode == "layer_norm" else ("group" if i == 0 else None)
            blocks.append(ConvBlock(in_dim, dim, kernel, stride, bias=config.conv_bias, norm=norm,
                                    dropout=config.dropout))
            in_dim = dim
        self.conv_layers = nn.ModuleList(blocks)
        self.dim = in_dim
        self.layer_norm = nn.LayerNorm(in_dim, eps=config.layer_norm_eps)
        self._upstream = upstream or waveform_signal()
        self.receptive_field = self.produces().receptive_field // self._upstream.receptive_field
        #: recompute the conv stack in backward (``trainer.activation_checkpointing``)
        self.activation_checkpointing = False

    @classmethod
    def from_config(cls, config: Wav2Vec2FeatureEncoderConfig, upstream: Signal | None = None,
                    **context) -> "Wav2Vec2FeatureEncoder":
        if upstream is not None and upstream.kind != "waveform":
            raise FitError(f"the wav2vec 2.0 conv encoder reads a waveform, but its input is "
                           f"{upstream.describe()}.",
                           hint="Use it on raw audio, or pick an encoder for precomputed features.")
        return cls(config, upstream)

    def produces(self) -> Signal:
        """Frames of width C; stride and receptive field from the conv stack (320 / 400 samples
        by default). Causal in ``layer_norm`` mode; not causal in ``group_norm`` mode, whose
        GroupNorm normalises over the whole utterance."""
        signal = self._upstream
        for dim, kernel, stride in self.conv_config:
            signal = signal.then(kind="frames", dim=dim, stride=stride, receptive_field=kernel)
        return attrs.evolve(signal, causal=signal.causal and self.mode == "layer_norm")

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for block in self.conv_layers:
            lengths = block.output_lengths(lengths)
        return lengths

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Keep only each conv block's input in training and recompute the block in backward,
        one block at a time (one more forward of the stack for its activations' memory)."""
        self.activation_checkpointing = bool(enabled)

    def compile_regions(self) -> list[nn.Module]:
        """The conv blocks, for regional ``torch.compile`` (``trainer.compile``): each block's
        norm and GELU fuse into one pass over its output; the convolutions stay library calls.
        They run compiled in bf16 and on GPUs; fp32 on CPU keeps its faster eager row path
        (:meth:`_convolve`), so they are never compiled there."""
        return list(self.conv_layers)

    def _convolve(self, x: Tensor, lengths: Tensor | None, recompute: bool = False) -> Tensor:
        """``x`` ``[B, 1, S]`` -> ``[B, C, T]`` (channels-last strides on CPU); with
        ``recompute`` each block keeps only its input and is recomputed in backward."""
        exclude = self.mode == "group_norm" and self.group_norm_padding == "exclude" \
            and lengths is not None
        channels_last = runs_channels_last(x)
        if channels_last:
            x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)   # [B, 1, 1, S]
        # fp32 on CPU is the row path (row_conv). In training a block leaves its GELU (and a
        # GroupNorm over time before it) to the next block's row_conv, so that only its
        # convolution's output is kept for backward. The row path runs eagerly even where
        # trainer.compile compiled the blocks: compiled, the stack's forward + backward took
        # 1.7 x as long (docs/benchmarks.md). Compiled blocks run in bf16 and on GPUs.
        # The first block is handed to the second whole where its activation is a function
        # of the waveform's windows alone (no dropout, no statistics over valid frames):
        # the second block reads it piece by piece (WaveBlock). In training (a first block
        # with a norm) only the waveform and a GroupNorm's statistics are kept for backward.
        rows = channels_last and not computes_in_bf16(x)
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        defer = rows and trains
        first = self.conv_layers[0]
        hand_over = rows and not exclude and len(self.conv_layers) > 1 \
            and not (first.training and first.dropout.p > 0) \
            and (not trains or (first.norm is not None and not x.requires_grad))
        pending: dict = {}                            # what the next block applies to x
        for i, block in enumerate(self.conv_layers):
            if i == 0 and hand_over:
                pending = {"first_block": block}
                continue
            valid = None
            if exclude and i == 0:
                out_len = block.output_lengths(lengths)
                steps = torch.arange((x.shape[-1] - block.kernel) // block.stride + 1,
                                     device=x.device)
                valid = steps[None, :] < out_len[:, None]
            leave = defer and i + 1 < len(self.conv_layers) and (
                block.norm is None or (block.norm_kind == "group" and valid is None))
            kw = {**pending, "activate": not leave}
            call = block._call_impl if rows else block      # _call_impl: never the compiled
            x = recomputed(call, x, valid, **kw) if recompute else call(x, valid, **kw)
            pending = {"gelu_input": True, "norm_input": block.norm} if leave else {}
        return x.squeeze(2) if channels_last else x

    def forward(self, source: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        if source.dim() != 2:
            raise ValueError(f"expected a waveform batch [B, S], found shape {list(source.shape)}")
        if source.shape[1] < self.receptive_field:
            raise DataError(f"the audio is {source.shape[1]} samples long, shorter than the conv "
                            f"encoder's receptive field ({self.receptive_field} samples): it "
                            f"yields no frame.", hint="Drop or pad utterances that short.")
        pad_in = lengths_to_padding_mask(lengths, source.shape[1])
        if pad_in is not None:
            source = source.masked_fill(pad_in, 0.0)
        x = source.unsqueeze(1)
        if self.feature_grad_mult > 0:
            recompute = self.activation_checkpointing and self.training \
                and torch.is_grad_enabled()
            x = self._convolve(x, lengths, recompute)
            x = grad_multiply(x, self.feature_grad_mult)
        else:
            with torch.no_grad():
                x = self._convolve(x, lengths)
        x = x.transpose(1, 2)                                   # [B, T, C]
        out_lengths = self.output_lengths(lengths) if lengths is not None else None
        pad = lengths_to_padding_mask(out_lengths, x.shape[1])
        squares = x.float().pow(2)
        if pad is None or self.fairseq_compat:
            penalty = squares.mean()
        else:
            valid = (~pad).to(squares.dtype)[..., None]
            penalty = (squares * valid).sum() / (valid.sum() * x.shape[-1]).clamp(min=1.0)
        features = self.layer_norm(x)
        if pad is not None:
            features = features.masked_fill(pad[..., None], 0.0)
        return EncoderOutput(features=features, lengths=out_lengths, penalty=penalty)
