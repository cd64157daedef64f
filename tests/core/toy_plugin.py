"""A tiny third-party-style plugin used by the core tests: a toy encoder, quantizer, aggregator."""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import nn

from w2v import hookimpl
from w2v.config import ComponentSpec, check, component, field, real, size
from w2v.interfaces import (Aggregator, AggregatorOutput, Encoder, EncoderOutput, Quantizer,
                            QuantizerOutput, Signal)

W2V_PLUGIN_API = "1.0"


class ToyEncoder(Encoder):
    """Frames a waveform with one strided conv."""

    @attrs.define(kw_only=True)
    class Config:
        dim: int = size(8, 1, 4096, "output channels")
        stride: int = size(4, 1, 1000, "samples per frame")

    def __init__(self, dim: int, stride: int, sample_rate: int):
        super().__init__()
        self.conv = nn.Conv1d(1, dim, stride, stride)
        self._signal = Signal(kind="frames", dim=dim, sample_rate=sample_rate, stride=stride,
                              receptive_field=stride, causal=True)

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(config.dim, config.stride, upstream.sample_rate if upstream else 16000)

    def produces(self):
        return self._signal

    def forward(self, source, lengths=None):
        x = self.conv(source[:, None]).transpose(1, 2)
        return EncoderOutput(features=x, lengths=self.output_lengths(lengths) if lengths is not None
                             else None)


class ToyQuantizer(Quantizer):
    """Rounds features to a grid (a stand-in quantizer with a nested component reference)."""

    @attrs.define(kw_only=True)
    class Config:
        groups: int = size(2, 1, 64, "groups")
        num_vars: int = size(4, 2, 100000, "entries per group")
        temp: tuple[float, float, float] = field((2.0, 0.5, 0.999995), "(max, min, decay)")
        mode: Literal["hard", "soft"] = field("hard", "straight-through or soft")
        scale: float = real(1.0, 0.0, 10.0, "grid scale")
        inner: ComponentSpec | None = component("aggregator", None, "an optional nested component")

        def __attrs_post_init__(self):
            check(self.temp[0] >= self.temp[1], "temp", "max temperature must be >= min temperature.")

    def __init__(self, dim, groups, num_vars):
        super().__init__()
        self.groups, self.num_vars, self.dim = groups, num_vars, dim
        self.scale = nn.Parameter(torch.ones(dim))

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(upstream.dim, config.groups, config.num_vars)

    def produces(self):
        return Signal(kind="frames", dim=self.dim)

    def forward(self, x, lengths=None):
        v = x * self.scale
        codes = torch.zeros(*x.shape[:2], self.groups, dtype=torch.long)
        return QuantizerOutput(vectors=v, codes=codes)


class ToyAggregator(Aggregator):
    """A stack of linear layers (bidirectional unless `causal`)."""

    @attrs.define(kw_only=True)
    class Config:
        layers: int = size(2, 1, 64, "blocks")
        dim: int = size(0, 0, 8192, "width (0 = input width)")
        causal: bool = field(False, "causal")

    def __init__(self, in_dim, dim, layers, causal):
        super().__init__()
        self.input_dim = in_dim
        self.blocks = nn.ModuleList(nn.Linear(in_dim if i == 0 else dim, dim) for i in range(layers))
        self.causal = causal
        self.dim = dim

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(upstream.dim, config.dim or upstream.dim, config.layers, config.causal)

    def produces(self):
        return Signal(kind="frames", dim=self.dim, causal=self.causal)

    def forward(self, x, lengths=None, layers=None):
        outs = []
        for b in self.blocks:
            x = b(x)
            outs.append(x)
        return AggregatorOutput(output=x, layers=outs, lengths=lengths)


@hookimpl
def w2v_register_components(registrar):
    registrar.add_component("encoder", "toy_encoder", ToyEncoder, smoke={})
    registrar.add_component("quantizer", "toy_quantizer", ToyQuantizer, smoke={})
    registrar.add_component("aggregator", "toy_aggregator", ToyAggregator, smoke={"layers": 1})
