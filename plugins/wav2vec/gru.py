"""A unidirectional GRU context network (fairseq wav2vec ``aggregator: gru``)."""

from __future__ import annotations

from typing import Sequence

import attrs
from torch import Tensor, nn

from w2v.config import field, real, size
from w2v.interfaces import Aggregator, AggregatorOutput, Signal, last_block, upstream_dim

from .norms import valid_mask


@attrs.define(kw_only=True)
class GRUAggregatorConfig:
    dim: int = size(512, 1, 8192, "hidden width (fairseq gru_dim)")
    num_layers: int = size(1, 1, 16, "stacked GRU layers")
    dropout: float = real(0.0, 0.0, 1.0, "dropout between stacked layers")
    fairseq_compat: bool = field(False, "recur across the batch axis, as fairseq's `aggregator: "
                                        "gru` does (its GRU is not batch_first); for fairseq "
                                        "checkpoints, which were trained that way")


class GRUAggregator(Aggregator):
    """Unidirectional GRU: ``x [B, T, input_dim] -> c [B, T, dim]``, causal by construction.

    Built as ``GRUAggregator(config, input_dim, upstream=None)``: settings from
    :class:`GRUAggregatorConfig`, the upstream width and signal as wiring.

    Padded steps come after the valid ones, so a unidirectional recurrence never
    lets them reach a valid output; no packing is needed, and padded outputs
    are zeroed. The history is unbounded: :meth:`produces` reports the
    upstream receptive field.

    ``fairseq_compat``: fairseq transposes to ``[B, T, C]`` and then runs a GRU that
    is not ``batch_first``, so its recurrence runs across the *batch* axis (frame t
    of utterance b sees frame t of utterances 0..b) and every frame starts from a
    zero state in time. This flag reproduces that, so fairseq GRU checkpoints give
    fairseq's outputs; it stays causal in time.
    """

    Config = GRUAggregatorConfig
    structurally_causal = True

    def __init__(self, config: GRUAggregatorConfig, input_dim: int,
                 upstream: Signal | None = None) -> None:
        super().__init__()
        self.fairseq_compat = config.fairseq_compat
        self.input_dim = input_dim
        self.dim = dim = config.dim
        self.upstream = upstream or Signal(kind="frames", dim=input_dim)
        self.layers = nn.ModuleList(nn.GRU(input_dim if i == 0 else dim, dim, batch_first=True)
                                    for i in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)

    @classmethod
    def from_config(cls, config: GRUAggregatorConfig, upstream: Signal | None = None,
                    **context) -> "GRUAggregator":
        return cls(config, upstream_dim(upstream, "GRU aggregator"), upstream)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def produces(self) -> Signal:
        return self.upstream.then(kind="frames", dim=self.dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None,
                layers: int | Sequence[int] | None = None) -> AggregatorOutput:
        """``x`` [B, T, input_dim] -> :class:`AggregatorOutput` (``output`` [B, T, dim])."""
        last = last_block(layers, len(self.layers))
        mask = None if lengths is None else valid_mask(lengths, x.shape[1]).transpose(1, 2)
        outputs = []
        h = x
        for i, gru in enumerate(self.layers[:last + 1]):
            h = self.dropout(h) if i else h
            if self.fairseq_compat:   # [T, B, C] to a batch_first GRU: recurrence over B
                h = gru(h.transpose(0, 1))[0].transpose(0, 1)
            else:
                h = gru(h)[0]
            outputs.append(h if mask is None else h * mask.to(h.dtype))
        return AggregatorOutput(output=outputs[-1], layers=outputs, lengths=lengths)
