"""A small non-causal conv acoustic model (aggregator ``wav2letter``) for frozen features.

The wav2vec and vq-wav2vec papers evaluate their features with wav2letter
acoustic models: stacks of 1-D convolutions over the frames, trained with a
letter-level sequence loss. This is a small member of that family for the
downstream ``train`` stage over the ``features`` data source: each block is ``Conv1d(kernel, same
padding) -> LayerNorm over channels (per frame) -> activation -> dropout``, with
a residual sum when the width is unchanged. Padded frames are zeroed before
every block, so an utterance gives the same output alone or padded in a batch.
"""

from __future__ import annotations

from typing import Literal, Sequence

import attrs
from torch import Tensor, nn

from w2v.config import check, choice, field, real
from w2v.interfaces import (Aggregator, AggregatorOutput, Signal, last_block,
                            lengths_to_padding_mask, upstream_dim)


@attrs.define(kw_only=True)
class Wav2LetterConfig:
    layers: list[tuple[int, int]] = field([(256, 7), (256, 7), (256, 7)],
                                          "blocks as [[dim, kernel], ...]; kernels must be odd")
    norm: Literal["layer", "none"] = choice("layer", "LayerNorm over channels per frame, or none")
    activation: Literal["relu", "gelu"] = choice("relu", "activation after each norm")
    dropout: float = real(0.1, 0.0, 1.0, "dropout after each block")
    residual: bool = field(True, "add each block's input to its output when the width is "
                                 "unchanged")

    def __attrs_post_init__(self) -> None:
        check(len(self.layers) > 0, "layers", "needs at least one block.")
        for i, layer in enumerate(self.layers):
            dim, kernel = layer
            check(dim > 0 and kernel > 0 and kernel % 2 == 1, f"layers.{i}",
                  f"needs a positive width and an odd kernel, found [{dim}, {kernel}].",
                  hint="Odd kernels keep frame t centred on input frame t.")


class ConvBlock(nn.Module):
    def __init__(self, in_dim: int, dim: int, kernel: int, norm: str, activation: str,
                 dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, dim, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim) if norm == "layer" else nn.Identity()
        self.activation = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, T, C]`` -> ``[B, T, dim]``."""
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.dropout(self.activation(self.norm(y)))


class Wav2LetterAggregator(Aggregator):
    """Frames ``[B, T, input_dim]`` -> ``[B, T, layers[-1].dim]``, non-causal, stride 1."""

    Config = Wav2LetterConfig
    structurally_causal = False

    def __init__(self, config: Wav2LetterConfig, input_dim: int,
                 upstream: Signal | None = None) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.layer_spec = [tuple(int(v) for v in layer) for layer in config.layers]
        self.residual = config.residual
        self.upstream = upstream or Signal(kind="frames", dim=input_dim)
        self.blocks = nn.ModuleList()
        in_dim = input_dim
        for dim, kernel in self.layer_spec:
            self.blocks.append(ConvBlock(in_dim, dim, kernel, config.norm, config.activation,
                                         config.dropout))
            in_dim = dim

    @classmethod
    def from_config(cls, config: Wav2LetterConfig, upstream: Signal | None = None,
                    **context) -> "Wav2LetterAggregator":
        return cls(config, upstream_dim(upstream, "wav2letter aggregator"), upstream)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def produces(self) -> Signal:
        span = 1 + sum(kernel - 1 for _, kernel in self.layer_spec)
        return self.upstream.then(kind="frames", dim=self.layer_spec[-1][0],
                                  receptive_field=span, causal=False)

    def forward(self, x: Tensor, lengths: Tensor | None = None,
                layers: int | Sequence[int] | None = None) -> AggregatorOutput:
        last = last_block(layers, len(self.blocks))
        mask = None if lengths is None else \
            (~lengths_to_padding_mask(lengths, x.shape[1]))[..., None].to(x.dtype)   # [B, T, 1]
        outputs = []
        h = x
        for block in self.blocks[:last + 1]:
            if mask is not None:
                h = h * mask
            y = block(h)
            h = y + h if self.residual and y.shape[-1] == h.shape[-1] else y
            outputs.append(h if mask is None else h * mask)
        return AggregatorOutput(output=outputs[-1], layers=outputs, lengths=lengths)

