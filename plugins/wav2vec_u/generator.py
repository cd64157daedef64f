"""The wav2vec-U generator: segment features -> phone logits (fairseq ``Generator``).

``[B, T, C]`` features -> [batch norm over valid frames] -> [x + Linear(dropout(x))]
-> dropout -> Conv1d(C, V, kernel, stride, padding=kernel // 2) -> ``[B, T', V]``
logits over the phone dictionary (specials included, as fairseq). Registered as a
``head``: the model's encoder hands it the precomputed features, and the
dictionary sizes its output, exactly as a CTC head's.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor, nn

from w2v.config import field, real, size
from w2v.data.dictionary import as_dictionary
from w2v.errors import ConfigError
from w2v.interfaces import Head, Signal, lengths_to_padding_mask, upstream_dim


@attrs.define(kw_only=True)
class GeneratorConfig:
    kernel: int = size(4, 1, 64, "convolution kernel (w2vu 4, w2vu2 9)")
    stride: int = size(1, 1, 16, "convolution stride (w2vu 1, w2vu2 3)")
    dilation: int = size(1, 1, 16, "convolution dilation")
    bias: bool = field(False, "bias on the convolution")
    dropout: float = real(0.1, 0.0, 1.0, "dropout on the input (and the residual branch)")
    batch_norm: float = real(0.0, 0.0, None, "batch norm over valid frames with its weight "
                                             "initialised to this value; 0 = off (w2vu2: 30)")
    residual: bool = field(False, "a residual Linear(C, C) branch before the convolution (w2vu2)")


class PhoneGenerator(Head):
    """Features ``[B, T, C]`` -> phone logits ``[B, T', V]`` (``T' = output_lengths``).

    The residual branch's output is kept in :attr:`last_residual` ``[B, T, C]`` for the
    wav2vec-U 2.0 auxiliary (MMI) loss.
    """

    Config = GeneratorConfig

    def __init__(self, config: GeneratorConfig, input_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.input_dim, self.vocab_size = input_dim, vocab_size
        self.norm = nn.BatchNorm1d(input_dim) if config.batch_norm else None
        if self.norm is not None:
            nn.init.constant_(self.norm.weight, config.batch_norm)
        self.residual = nn.Linear(input_dim, input_dim) if config.residual else None
        self.dropout = nn.Dropout(config.dropout)
        self.conv = nn.Conv1d(input_dim, vocab_size, config.kernel, stride=config.stride,
                              dilation=config.dilation, padding=config.kernel // 2,
                              bias=config.bias)
        self.last_residual: Tensor | None = None

    @classmethod
    def from_config(cls, config: GeneratorConfig, upstream: Signal | None = None,
                    dictionary: Any = None, **context: Any) -> "PhoneGenerator":
        dictionary = as_dictionary(dictionary)
        if dictionary is None:
            raise ConfigError("the wav2vec-U generator needs the phone dictionary to size its "
                              "output.", hint="Run the text preparation stage first; the GAN "
                                              "stage passes its dictionary.")
        return cls(config, upstream_dim(upstream, "wav2vec-U generator"), len(dictionary))

    @classmethod
    def dry_run_dictionary(cls, labels: str | None) -> Any:
        """A stand-in phone inventory (40 phones and ``<SIL>``): the real one comes from the
        text preparation stage."""
        from w2v.data.dictionary import Dictionary

        return Dictionary.from_symbols([f"p{i}" for i in range(40)] + ["<SIL>"])

    def output_lengths(self, lengths: Tensor, frames: int) -> Tensor:
        """Valid output frames for ``lengths`` valid inputs of ``frames`` (fairseq's rule:
        every ``stride``-th input frame, then shifted by the convolution's extra frames)."""
        cfg = self.config
        out = (frames + 2 * (cfg.kernel // 2) - cfg.dilation * (cfg.kernel - 1) - 1) \
            // cfg.stride + 1
        kept = -(-frames // cfg.stride)
        valid = torch.div(lengths + cfg.stride - 1, cfg.stride, rounding_mode="floor")
        return (valid + (out - kept)).clamp(min=0, max=out)

    def extra_outputs(self) -> dict[str, Tensor]:
        """``residual``: ``[B, T, C]`` the residual branch of the last forward (w2vu2)."""
        return {} if self.last_residual is None else {"residual": self.last_residual}

    def _normalise(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        if self.norm is None:
            return x
        if lengths is None:
            return self.norm(x.reshape(-1, x.shape[-1])).view_as(x)
        valid = ~lengths_to_padding_mask(lengths, x.shape[1])
        out = x.clone()
        out[valid] = self.norm(x[valid])
        return out

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        x = self._normalise(x, lengths)
        if self.residual is not None:
            self.last_residual = self.residual(self.dropout(x))
            x = x + self.last_residual
        return self.conv(self.dropout(x).transpose(1, 2)).transpose(1, 2)
