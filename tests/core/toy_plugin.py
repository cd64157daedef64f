"""A tiny third-party-style plugin used by the core tests.

Components: a toy encoder, quantizer, aggregator, objective, decoder, stage and data
source (``toy_sines``: sine waves made in memory),
plus a plugin-declared kind ``toy_norm`` (one component, ``toy_scale``, with a
required field) that the aggregator can reference, so recipes can nest
component references three deep (``model.quantizer.inner.block``).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import nn

from w2v import hookimpl
from w2v.config import ComponentSpec, check, component, field, real, size
from w2v.data.config import SourceConfig
from w2v.errors import FitError
from w2v.interfaces import (Aggregator, AggregatorOutput, DataSource, Decoder, Encoder,
                            EncoderOutput, Hypothesis, Objective, ObjectiveOutput, Quantizer,
                            QuantizerOutput, Signal, Stage)

W2V_PLUGIN_API = "2.0"


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


class ToyNorm(nn.Module):
    """Base of the plugin-declared ``toy_norm`` kind: ``forward(x [B, T, D]) -> [B, T, D]``."""


class ToyScale(ToyNorm):
    """Scales frames by a learned per-channel factor (has a required config field)."""

    @attrs.define(kw_only=True)
    class Config:
        factor: float = real(lo=0.0, hi=100.0, help="initial scale (required)")
        mode: Literal["mul", "div"] = field("mul", "multiply or divide by the scale")

    def __init__(self, dim: int, factor: float, mode: str):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(factor)))
        self.mode = mode

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(upstream.dim, config.factor, config.mode)

    def forward(self, x):
        return x * self.scale if self.mode == "mul" else x / self.scale


class ToyAggregator(Aggregator):
    """A stack of linear layers (bidirectional unless `causal`)."""

    @attrs.define(kw_only=True)
    class Config:
        layers: int = size(2, 1, 64, "blocks")
        dim: int = size(0, 0, 8192, "width (0 = input width)")
        causal: bool = field(False, "causal")
        block: ComponentSpec | None = component("toy_norm", None, "optional output scaling")

    def __init__(self, in_dim, dim, layers, causal, block=None):
        super().__init__()
        self.input_dim = in_dim
        self.blocks = nn.ModuleList(nn.Linear(in_dim if i == 0 else dim, dim) for i in range(layers))
        self.causal = causal
        self.dim = dim
        self.block = block

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        dim = config.dim or upstream.dim
        block = config.block.build(Signal(kind="frames", dim=dim)) if config.block else None
        return cls(upstream.dim, dim, config.layers, config.causal, block)

    def produces(self):
        return Signal(kind="frames", dim=self.dim, causal=self.causal)

    def forward(self, x, lengths=None, layers=None):
        outs = []
        for b in self.blocks:
            x = b(x)
            outs.append(x)
        if self.block is not None:
            x = self.block(x)
        return AggregatorOutput(output=x, layers=outs, lengths=lengths)


class ToyObjective(Objective):
    """Sum of squared context features (optionally demands a causal aggregator)."""

    @attrs.define(kw_only=True)
    class Config:
        weight: float = real(1.0, 0.0, 100.0, "loss weight")
        needs_causal: bool = field(False, "refuse models whose context network sees the future")

    def __init__(self, weight: float, needs_causal: bool):
        super().__init__()
        self.weight = weight
        self.needs_causal = needs_causal
        self.bias = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(config.weight, config.needs_causal)

    def check_model(self, model):
        if self.needs_causal and not model.context_signal().causal:
            raise FitError("objective `toy_objective` predicts the future, but the model's "
                           "aggregator is bidirectional (non-causal).",
                           hint="Set `model.aggregator.causal: true`.")

    def forward(self, batch, output):
        out = output.context
        loss = self.weight * out.pow(2).sum() + self.bias
        return ObjectiveOutput(loss=loss, sample_size=out.shape[0] * out.shape[1],
                               stats={"mean_sq": out.detach().pow(2).mean()})


class ToyGreedyDecoder(Decoder):
    """Argmax per frame, repeats and blanks (id 0) removed."""

    @attrs.define(kw_only=True)
    class Config:
        blank: int = size(0, 0, 1 << 16, "blank label id")

    def __init__(self, blank: int, dictionary=None):
        self.blank = blank
        self.dictionary = dictionary

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(config.blank, context.get("dictionary"))

    def decode(self, emissions, lengths=None):
        best = emissions.argmax(-1)
        hyps = []
        for row in range(best.shape[0]):
            n = int(lengths[row]) if lengths is not None else best.shape[1]
            ids = torch.unique_consecutive(best[row, :n]).tolist()
            ids = [i for i in ids if i != self.blank]
            hyps.append(Hypothesis(tokens=ids, text=" ".join(str(i) for i in ids)))
        return hyps


class ToyStage(Stage):
    """Writes its message to ``<stage dir>/toy.txt``."""

    @attrs.define(kw_only=True)
    class Config:
        message: str = field("done", "text written to toy.txt")

    def __init__(self, message: str):
        self.message = message

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(config.message)

    def run(self, context):
        (context.stage_dir / "toy.txt").write_text(self.message)


class ToySineSource(DataSource):
    """Sine waves made in memory (a third-party data source: no files, its own loader)."""

    no_smoke_reason = "tests/data/test_data_sources.py trains on it"

    @attrs.define(kw_only=True)
    class Config(SourceConfig):
        name: str = field("toy_sines", "the data source")
        train: str | None = field("train", "any name: the sines do not depend on it")
        utterances: int = size(8, 1, 1000, "sines per split")
        samples: int = size(400, 16, 16000, "samples per sine")
        sample_rate: int = size(16000, 1000, 48000, "rate")
        max_tokens: int = size(1600, 1, 1 << 20, "samples per batch")

        def inputs(self, splits=("train",), optional=()):
            return {}                                   # nothing on disk to check ahead

    def signal(self):
        return Signal(kind="waveform", dim=1, sample_rate=self.config.sample_rate)

    def has_split(self, split):
        return self.config.manifest(split) is not None

    def loader(self, split, *, rank=0, world_size=1, epoch=0, train=True, min_samples=0,
               dictionary=None):
        from w2v.data.sampler import BucketBatchSampler
        from w2v.interfaces import Batch

        cfg = self.config
        t = torch.arange(cfg.samples) / cfg.sample_rate
        waves = torch.stack([torch.sin(2 * torch.pi * (100 + 20 * i) * t)
                             for i in range(cfg.utterances)])
        sampler = BucketBatchSampler([cfg.samples] * cfg.utterances, max_tokens=cfg.max_tokens,
                                     shuffle=train, rank=rank, world_size=world_size,
                                     epoch=epoch)

        class Loader(torch.utils.data.DataLoader):
            skipped = []

        def collate(items):
            ids = torch.tensor(items)
            return Batch(source=waves[ids], ids=ids)

        dataset = list(range(cfg.utterances))
        return Loader(dataset, batch_sampler=sampler, collate_fn=collate), sampler


@hookimpl
def w2v_register_kinds(registrar):
    registrar.add_kind("toy_norm", ToyNorm, "a per-frame scaling used by the toy aggregator")


@hookimpl
def w2v_register_components(registrar):
    registrar.add_component("encoder", "toy_encoder", ToyEncoder, smoke={})
    registrar.add_component("quantizer", "toy_quantizer", ToyQuantizer, smoke={})
    registrar.add_component("aggregator", "toy_aggregator", ToyAggregator, smoke={"layers": 1})
    registrar.add_component("toy_norm", "toy_scale", ToyScale, smoke={"factor": 2.0})
    registrar.add_component("objective", "toy_objective", ToyObjective, smoke={})
    registrar.add_component("decoder", "toy_greedy", ToyGreedyDecoder, smoke={})
    registrar.add_stage("toy_stage", ToyStage)
    registrar.add_component("data_source", "toy_sines", ToySineSource)
