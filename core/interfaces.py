"""The component interfaces every plugin implements.

Data flows one way::

    waveform [B, S] --Encoder--> local features [B, T, C] (+ lengths)
    local --Quantizer--> codes [B, T, G] + code vectors [B, T, D] (+ aux loss, stats)
    local (maybe quantized) --projection--> --Masker--> --Aggregator--> context [B, T, D]
    model.forward(batch, mask=..., targets=...) --> ModelOutput   (the whole chain, once)
    Objective(batch, ModelOutput) --> loss + stats   (declares what it needs; only scores)
    Decoder(emissions [B, T, V], lengths) --> hypotheses

Each component states what it *produces* as a :class:`Signal` (width, frame
rate, receptive field, causality, kind) and is built from its config plus the
upstream component's :class:`Signal`; derived sizes never come from the user's
YAML. Mixing components is the point: :func:`w2v.build.check_fit` rejects a
combination that cannot work before any training starts.

Conventions: ``lengths`` is a ``[B]`` long tensor of valid steps, or ``None``
when the batch has no padding. Padded positions hold zeros.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, Iterator, Literal, Mapping, Sequence, Union

import attrs
import torch
from torch import Tensor, nn

SignalKind = Literal["waveform", "frames", "tokens", "features"]

#: What an objective asks ``model.forward`` to mask: False (nothing), True (a mask the
#: model's masker samples with its own settings), a mapping (sampled with these settings
#: overriding the masker's, e.g. fine-tuning's ``mask_prob``) or a ``[B, T]`` bool tensor.
MaskRequest = Union[bool, Tensor, Mapping[str, Any]]
#: Which unmasked targets ``model.forward`` returns: ``none``, ``masked`` (the frames under
#: the mask, wav2vec 2.0) or ``all`` (every frame, wav2vec 1.0).
TargetRequest = Literal["none", "masked", "all"]


@attrs.frozen(kw_only=True)
class Signal:
    """What a component produces (or a data source provides).

    Attributes:
        kind: ``waveform`` (samples), ``frames`` (learned frame features),
            ``tokens`` (discrete ids), ``features`` (precomputed vectors).
        dim: channels per step (1 for waveform; vocabulary size for tokens).
        sample_rate: input samples per second the chain started from.
        stride: input samples per output step (320 for wav2vec 2.0's encoder).
        receptive_field: input samples one output step sees (400 for wav2vec 2.0).
        causal: True when no output step depends on later input.
    """

    kind: SignalKind
    dim: int
    sample_rate: int = 16000
    stride: int = 1
    receptive_field: int = 1
    causal: bool = True

    @property
    def frame_rate(self) -> float:
        """Output steps per second."""
        return self.sample_rate / self.stride

    def frames_to_ms(self, frames: float) -> float:
        return 1000.0 * frames * self.stride / self.sample_rate

    def then(self, *, kind: SignalKind | None = None, dim: int | None = None, stride: int = 1,
             receptive_field: int = 1, causal: bool = True) -> "Signal":
        """The signal after a layer with the given stride/receptive field (in steps of self)."""
        return Signal(
            kind=kind or self.kind,
            dim=self.dim if dim is None else dim,
            sample_rate=self.sample_rate,
            stride=self.stride * stride,
            receptive_field=self.receptive_field + (receptive_field - 1) * self.stride,
            causal=self.causal and causal,
        )

    def describe(self) -> str:
        rate = f"{self.frame_rate:g} Hz" if self.kind != "waveform" else f"{self.sample_rate} Hz"
        rf = f", receptive field {1000 * self.receptive_field / self.sample_rate:.1f} ms" \
            if self.kind != "waveform" else ""
        return f"{self.kind}, dim {self.dim}, {rate}{rf}, {'causal' if self.causal else 'non-causal'}"


def upstream_dim(upstream: Signal | None, component: str) -> int:
    """The input width ``component`` reads from ``upstream``; a config error when it has none."""
    if upstream is None:
        from .errors import ConfigError
        raise ConfigError(f"the {component} needs an upstream component (an encoder) to know "
                          "its input width.")
    return upstream.dim


def waveform_signal(sample_rate: int = 16000) -> Signal:
    """The signal a raw-audio data source provides."""
    return Signal(kind="waveform", dim=1, sample_rate=sample_rate, stride=1, receptive_field=1,
                  causal=True)


# --------------------------------------------------------------------------- records


@attrs.define(kw_only=True)
class EncoderOutput:
    """Local features from a waveform.

    Attributes:
        features: ``[B, T, C]`` local features as quantizers and targets see them
            (wav2vec 2.0: after the feature LayerNorm; wav2vec 1.0: z).
        lengths: ``[B]`` valid frames, or None.
        penalty: scalar feature penalty (wav2vec 2.0's mean squared conv output), or None.
    """

    features: Tensor
    lengths: Tensor | None = None
    penalty: Tensor | None = None


@attrs.define(kw_only=True)
class QuantizerOutput:
    """Discrete codes and their vectors.

    Attributes:
        vectors: ``[B, T, D]`` code vectors (straight-through in training).
        codes: ``[B, T, G]`` long code index per group.
        aux_loss: scalar loss the quantizer wants added (k-means commitment), or None.
        diversity: scalar ``(G*V - prob_perplexity) / (G*V)`` (Gumbel), or None.
        stats: scalars to log (``code_perplexity``, ``prob_perplexity``, ``temp``, ...).
    """

    vectors: Tensor
    codes: Tensor
    aux_loss: Tensor | None = None
    diversity: Tensor | None = None
    stats: dict[str, float | Tensor] = attrs.field(factory=dict)


@attrs.define(kw_only=True)
class AggregatorOutput:
    """Context features.

    Attributes:
        output: ``[B, T, D]`` final output, final LayerNorm included where the
            architecture has one.
        layers: raw output of each block in order, ``[B, T, D]`` each (up to the
            last layer asked for).
        lengths: ``[B]`` valid frames, or None.
    """

    output: Tensor
    # a plain default, not a factory: torch.compile cannot trace the __init__ that attrs
    # writes for a factory (trainer.compile compiles whole aggregators, which return this)
    layers: Sequence[Tensor] = ()
    lengths: Tensor | None = None


@attrs.define(kw_only=True)
class ModelOutput:
    """What one ``model.forward`` returns: everything an objective scores.

    Attributes:
        local: ``[B, T, C]`` encoder output as quantizer and targets see it.
        lengths: ``[B]`` valid frames, or None.
        penalty: scalar feature penalty of the encoder, or None.
        mask: ``[B, T]`` bool frames the mask covers (applied by the model's masker,
            or by the objective to the input), or None.
        targets: unmasked targets before quantization: ``[M, C]`` at the masked
            frames in order (``dropout_features`` applied, as fairseq wav2vec 2.0), or
            ``[B, T, C]`` every frame (the local features as they are); None when not asked.
        quantized_targets: the quantizer over ``targets`` (vectors ``[M, D]`` or
            ``[B, T, D]``) when the model quantizes targets, else None.
        quantized_input: the quantizer over every frame when its vectors feed the
            aggregator, else None (may be the same record as ``quantized_targets``).
        context: ``[B, T, D]`` context output (final LayerNorm included); the
            (quantized) local features for a model without aggregator.
        layers: raw output of each context block, ``[B, T, D]`` each.
        logits: ``[B, T', V]`` output head logits, or None (no head).
        logit_lengths: ``[B]`` valid steps of ``logits`` (a strided head shortens them), or
            None when the batch has no padding.
        head_extra: what else the head computed for its objective (:meth:`Head.extra_outputs`:
            the wav2vec-U 2.0 generator's residual branch).
    """

    local: Tensor
    lengths: Tensor | None = None
    penalty: Tensor | None = None
    mask: Tensor | None = None
    targets: Tensor | None = None
    quantized_targets: "QuantizerOutput | None" = None
    quantized_input: "QuantizerOutput | None" = None
    context: Tensor | None = None
    layers: list[Tensor] = attrs.field(factory=list)
    logits: Tensor | None = None
    logit_lengths: Tensor | None = None
    head_extra: dict[str, Tensor] = attrs.field(factory=dict)

    @property
    def target_vectors(self) -> Tensor | None:
        """The targets as scored: quantized when the model quantizes targets."""
        if self.quantized_targets is not None:
            return self.quantized_targets.vectors
        return self.targets

    @property
    def quantized(self) -> list["QuantizerOutput"]:
        """Each distinct quantizer run of this forward, in order (input, then targets)."""
        out = [q for q in (self.quantized_input, self.quantized_targets) if q is not None]
        return out[:1] if len(out) == 2 and out[0] is out[1] else out

    def frame_lengths(self) -> Tensor:
        """``[B]`` valid frames, full length when the batch has no padding."""
        if self.lengths is not None:
            return self.lengths.long()
        B, T = self.local.shape[:2]
        return torch.full((B,), T, dtype=torch.long, device=self.local.device)


@attrs.define(kw_only=True)
class ObjectiveOutput:
    """What one objective forward returns to the trainer.

    Attributes:
        loss: scalar to backpropagate, a *sum* over ``sample_size`` units
            (masked frames, target tokens, utterances) as fairseq does; the
            trainer divides gradients by the global sample size.
        sample_size: number of units the loss is summed over.
        stats: scalars to log; tensors are detached and reduced by the trainer.
        group: for composite (multi-optimizer) training, the parameter group
            this loss updates (``generator`` / ``discriminator``), else None.
    """

    loss: Tensor
    sample_size: int | Tensor
    stats: dict[str, float | Tensor] = attrs.field(factory=dict)
    group: str | None = None


@attrs.define(kw_only=True)
class Hypothesis:
    """One decoded utterance: ``tokens`` (label ids), ``text``, optional ``words`` and ``score``."""

    tokens: list[int]
    text: str
    words: list[str] = attrs.field(factory=list)
    score: float = 0.0


@attrs.define(kw_only=True)
class Batch:
    """A training or evaluation batch.

    Attributes:
        source: ``[B, S]`` waveform (or ``[B, T, C]`` precomputed features, or
            ``[B, T]`` token ids, per the data source's :class:`Signal` kind).
        lengths: ``[B]`` valid steps of ``source``, or None when padding-free.
        ids: ``[B]`` long row index of each utterance in its manifest (drives
            per-sample randomness so resumed runs repeat exactly).
        targets: label ids ``[B, L]`` padded with ``pad_id``, or None.
        target_lengths: ``[B]``, or None.
        extra: anything else a stage's data source provides (alignments, units).
    """

    source: Tensor
    lengths: Tensor | None = None
    ids: Tensor | None = None
    targets: Tensor | None = None
    target_lengths: Tensor | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        def move(x):
            return x.to(device, non_blocking=non_blocking) if isinstance(x, Tensor) else x

        return Batch(source=move(self.source), lengths=move(self.lengths), ids=move(self.ids),
                     targets=move(self.targets), target_lengths=move(self.target_lengths),
                     extra={k: move(v) for k, v in self.extra.items()})

    def pin_memory(self) -> "Batch":
        """Page-locked copies (DataLoader calls this with ``pin_memory=True``)."""
        def pin(x):
            return x.pin_memory() if isinstance(x, Tensor) else x

        return Batch(source=pin(self.source), lengths=pin(self.lengths), ids=pin(self.ids),
                     targets=pin(self.targets), target_lengths=pin(self.target_lengths),
                     extra={k: pin(v) for k, v in self.extra.items()})

    @property
    def size(self) -> int:
        return int(self.source.shape[0])


# --------------------------------------------------------------------------- components


class Component:
    """Mixin for everything the registry builds.

    One construction style for every component: its settings live only in ``Config`` (an
    attrs class, the one place that holds their defaults and bounds), and the constructor
    takes that config first, then only what the wiring decides (the upstream width, the
    dictionary, the vocabulary size), never a setting: ``KMeansQuantizer(KMeansQuantizer
    .Config(groups=2), 512)``. :meth:`from_config` works the wiring out of the upstream
    signal and the context and calls the constructor; the default suits components with no
    wiring (``cls(config)``). ``kind`` is set by the registry.
    """

    Config: ClassVar[type]
    kind: ClassVar[str] = ""

    @classmethod
    def from_config(cls, config: Any, upstream: Signal | None = None, **context: Any):
        """Build from a structured config and the upstream component's signal."""
        return cls(config)


class Encoder(nn.Module, Component, abc.ABC):
    """Waveform (or features) to local frame features.

    ``forward(source [B, S], lengths [B] | None) -> EncoderOutput``. ``consumes``
    says what ``source`` holds: ``waveform`` ``[B, S]``, ``tokens`` ``[B, T]`` or
    ``features`` ``[B, T, C]``.
    """

    kind = "encoder"
    consumes: ClassVar[SignalKind] = "waveform"

    @abc.abstractmethod
    def forward(self, source: Tensor, lengths: Tensor | None = None) -> EncoderOutput: ...

    @abc.abstractmethod
    def produces(self) -> Signal:
        """The signal this encoder outputs."""

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames for ``lengths`` valid input steps."""
        s = self.produces()
        return torch.div(lengths - (s.receptive_field - s.stride), s.stride,
                         rounding_mode="floor").clamp(min=0)


class Quantizer(nn.Module, Component, abc.ABC):
    """Continuous frames to discrete codes and code vectors.

    ``forward(x [B, T, C], lengths) -> QuantizerOutput``; ``num_updates`` is
    set by the trainer before each step (temperature schedules read it).
    """

    kind = "quantizer"
    groups: int
    num_vars: int

    def __init__(self) -> None:
        super().__init__()
        self.num_updates = 0

    @abc.abstractmethod
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> QuantizerOutput: ...

    @abc.abstractmethod
    def produces(self) -> Signal: ...

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = num_updates


class Aggregator(nn.Module, Component, abc.ABC):
    """Frames to context (Transformer, causal conv, GRU, Conformer).

    ``forward(x [B, T, input_dim], lengths, layers=None) -> AggregatorOutput``.
    ``layers`` (an int or list of block indices) lets the forward stop after
    the last block asked for.
    """

    kind = "aggregator"
    input_dim: int

    @abc.abstractmethod
    def forward(self, x: Tensor, lengths: Tensor | None = None,
                layers: int | Sequence[int] | None = None) -> AggregatorOutput: ...

    @abc.abstractmethod
    def produces(self) -> Signal: ...

    @property
    def num_layers(self) -> int:
        return 1

    @property
    def structurally_causal(self) -> bool:
        """True when no output step is computed from later input steps by the network's
        *structure* (convolutions, attention, recurrence), even if a norm layer's statistics
        over time leak the future (wav2vec 1.0's GroupNorm(1, C)). Future-prediction
        objectives check this."""
        return bool(getattr(self, "causal", False)) or self.produces().causal


def last_block(layers: int | Sequence[int] | None, num_blocks: int) -> int:
    """Index of the last of ``num_blocks`` blocks an aggregator's forward with ``layers=`` must
    run (all of them for None); an IndexError for a block it does not have."""
    if layers is None:
        return num_blocks - 1
    last = layers if isinstance(layers, int) else max(layers)
    if not 0 <= last < num_blocks:
        raise IndexError(f"layer {last} asked for, but the aggregator has {num_blocks} blocks.")
    return last


class Masker(nn.Module, Component, abc.ABC):
    """Chooses masked steps and applies the mask (kind ``masker``); a slot of the model.

    ``sample(B, T, lengths, device, **settings) -> [B, T] bool``; ``apply(x, mask,
    channel_mask) -> x``; ``forward(x, lengths, mask=None, **settings) -> (x, mask)``
    does both (always: the caller decides whether to mask). ``settings`` override the
    masker's own for one call (fine-tuning's mask probability); :meth:`check_settings`
    refuses names the masker does not have.
    """

    kind = "masker"
    dim: int

    @abc.abstractmethod
    def sample(self, batch: int, time: int, lengths: Tensor | None = None,
               device: torch.device | str | None = None, **settings: Any) -> Tensor:
        """``[B, T]`` bool, True at masked steps."""

    def sample_channels(self, batch: int, device: torch.device | str | None = None,
                        **settings: Any) -> Tensor | None:
        """``[B, D]`` bool channel mask, or None when channel masking is off."""
        return None

    @abc.abstractmethod
    def apply(self, x: Tensor, mask: Tensor | None, channel_mask: Tensor | None = None) -> Tensor:
        """``x`` ``[B, T, D]`` with the masks applied."""

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Raise :class:`w2v.errors.FitError` unless every name of ``settings`` is one of
        this masker's settings."""
        if settings:
            from .errors import FitError
            raise FitError(f"the model's masker ({type(self).__name__}) has no "
                           f"{', '.join(settings)} setting to override.")

    def forward(self, x: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None,
                **settings: Any) -> tuple[Tensor, Tensor | None]:
        B, T, _ = x.shape
        if mask is None:
            mask = self.sample(B, T, lengths, x.device, **settings)
        return self.apply(x, mask, self.sample_channels(B, x.device, **settings)), mask


class Objective(nn.Module, Component, abc.ABC):
    """A training loss over a model's output; owns only loss-time parameters.

    The model runs its chain once (``model.forward``); the objective declares what
    it needs from that forward and only scores it:

    * ``wants_mask`` / ``targets`` (class attributes) or :meth:`request` (per batch)
      say what ``model.forward`` computes: a mask sampled by the model's masker (or
      none), which unmasked targets;
    * ``forward(batch, output: ModelOutput) -> ObjectiveOutput`` scores it.

    The trainer does ``objective(batch, model(batch, **objective.request(batch, model,
    step)))``; ``objective(batch, model, step)`` (a model instead of an output) does
    the same in one call, with the objective put in the model's train/eval mode.
    Objectives that depend on the update number (a GAN's alternation) implement
    ``set_num_updates``, which the trainer calls before every update. Constraints on
    the model are checked by :meth:`check_model` before training (e.g. a
    future-prediction objective needs a causal aggregator).
    """

    kind = "objective"
    #: a mask sampled by the model's masker (``model.forward(mask=True)``)
    wants_mask: ClassVar[bool] = False
    #: which unmasked targets ``model.forward`` returns (``none``, ``masked``, ``all``)
    targets: ClassVar[TargetRequest] = "none"

    def request(self, batch: Batch, model: nn.Module, step: int) -> dict[str, Any]:
        """Keyword arguments of ``model.forward`` for ``batch``: ``mask`` (a
        :data:`MaskRequest`), ``targets`` and, to corrupt the input itself, ``batch``."""
        return {"mask": self.wants_mask, "targets": self.targets}

    @abc.abstractmethod
    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        """Score ``output`` (the model's forward on ``batch``, as :meth:`request` asked)."""

    def __call__(self, batch: Batch, output: Any, step: int = 0) -> ObjectiveOutput:
        if isinstance(output, nn.Module):   # a model: in its mode, run its forward as requested
            if self.training != output.training:
                self.train(output.training)
            output = run_model(output, batch, self.request(batch, output, step))
        return super().__call__(batch, output)

    def check_model(self, model: nn.Module) -> None:
        """Raise :class:`w2v.errors.FitError` if ``model`` cannot be trained by this objective."""

    def parameter_groups(self, model: nn.Module) -> Mapping[str, Iterator[nn.Parameter]] | None:
        """Named parameter groups for composite training (GANs), or None for one group."""
        return None

    def group_for_step(self, step: int) -> str | None:
        """Which parameter group the update at ``step`` trains (composite mode)."""
        return None

    def valid_metrics(self) -> Sequence[str]:
        """Stats that make sense to select checkpoints on (lower is better unless listed in
        ``higher_is_better``)."""
        return ("loss",)

    higher_is_better: ClassVar[tuple[str, ...]] = ("accuracy",)


class Decoder(Component, abc.ABC):
    """Emissions to hypotheses (greedy CTC, beam search with LM, Viterbi)."""

    kind = "decoder"

    @abc.abstractmethod
    def decode(self, emissions: Tensor, lengths: Tensor | None = None) -> list[Hypothesis]:
        """``emissions`` [B, T, V] log-probabilities; returns one hypothesis per row."""


class Head(nn.Module, Component, abc.ABC):
    """An output layer on the context network: ``[B, T, D] -> [B, T, V]`` (CTC letters, phones).

    Built with ``from_config(config, upstream, dictionary=...)``: the output size
    comes from the label dictionary, never from the YAML.
    """

    kind = "head"
    vocab_size: int
    #: True: ``forward`` gets the model's hidden states ``[B, T, L, D]`` (input and every
    #: block, :mod:`w2v.hidden_states`) instead of the context ``[B, T, D]``
    reads_hidden_states: bool = False

    @classmethod
    def dry_run_dictionary(cls, labels: str | None) -> Any:
        """A stand-in label dictionary for ``labels`` (``ltr``, ``phn``, ...; None when the
        stage's data has no labels) that sizes the head in ``--dry-run`` before the real one
        exists, or None."""
        return None

    @abc.abstractmethod
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` [B, T, D] (``lengths`` [B] valid frames) -> logits [B, T, V]."""

    def output_lengths(self, lengths: Tensor, frames: int) -> Tensor:
        """Valid logit steps for ``lengths`` valid input frames out of ``frames`` (the same,
        unless the head is strided)."""
        return lengths

    def extra_outputs(self) -> dict[str, Tensor]:
        """Intermediate tensors of the last forward an objective may score (none here)."""
        return {}


class Stage(Component, abc.ABC):
    """One step of a recipe (pretrain, finetune, featurize, cluster, ...), built from its
    structured ``config`` alone."""

    kind = "stage"

    def __init__(self, config: Any) -> None:
        self.config = config

    @abc.abstractmethod
    def run(self, context: Any) -> None:
        """Run the stage; ``context`` is a :class:`w2v.stages.StageContext`."""

    def inputs(self, sections: Any) -> dict[str, str | None]:
        """What the stage reads from outside the run directory, by key path relative to the
        stage (``{"data.train": "demo:unlabeled"}``). Checked before any stage runs: None
        (a setting left empty), a missing path or a ``NAME:SPLIT`` no corpus provides stops a
        run (``--dry-run`` warns). Nothing is read or built here."""
        return {}

    def check(self, stage_id: str, sections: Any, stage_ids: Sequence[str]) -> None:
        """Check settings that only fail when the stage runs (an ``auto`` that has nothing to
        be made from, an unknown stage id), before any stage runs; raise a
        :class:`~w2v.errors.UserError`. ``stage_ids``: the recipe's stages in order."""


class DataSource(Component, abc.ABC):
    """Where a stage's utterances come from (manifests, Kaldi dirs, feature shards, units).

    Built from its ``data:`` section alone (``from_config(config)``). A source
    yields :class:`Batch` es whose ``source`` is what :meth:`signal` says:
    waveforms ``[B, S]``, feature frames ``[B, T, D]`` or token ids ``[B, T]``.
    Every source applies the section's bad-input policy (``bad_input``) to what
    it reads. See :mod:`w2v.data.sources` for the helpers most sources reuse.
    """

    kind = "data_source"

    def __init__(self, config: Any) -> None:
        self.config = config

    @abc.abstractmethod
    def signal(self) -> Signal:
        """What ``Batch.source`` holds (kind, width, rate); sizes the model's input."""

    @abc.abstractmethod
    def has_split(self, split: str) -> bool:
        """True when ``split`` (``train``, ``valid``, ``test``) is configured."""

    @abc.abstractmethod
    def loader(self, split: str, *, rank: int = 0, world_size: int = 1, epoch: int = 0,
               train: bool = True, min_samples: int = 0, dictionary: Any = None) -> tuple[Any, Any]:
        """``(DataLoader of Batch, resumable batch sampler)`` over ``split``; the loader's
        ``skipped`` lists the inputs the bad-input policy left out."""

    def dictionary(self) -> Any:
        """The dictionary the model and objective are built with (labels, or the unit
        vocabulary of a token source), or None."""
        return None


#: The component kinds of the core and the base class each must subclass.
CORE_KINDS: dict[str, type] = {
    "encoder": Encoder,
    "quantizer": Quantizer,
    "aggregator": Aggregator,
    "objective": Objective,
    "decoder": Decoder,
    "head": Head,
    "stage": Stage,
    "masker": Masker,
    "data_source": DataSource,
}


def run_model(model: nn.Module, batch: Batch, request: Mapping[str, Any]) -> ModelOutput:
    """``model.forward`` as an objective's :meth:`Objective.request` asks (``batch`` in the
    request replaces the one given)."""
    options = dict(request)
    return model(options.pop("batch", batch), **options)


def lengths_to_padding_mask(lengths: Tensor | None, max_len: int) -> Tensor | None:
    """``[B, T]`` bool, True at padded positions; None when ``lengths`` is None."""
    if lengths is None:
        return None
    steps = torch.arange(max_len, device=lengths.device)
    return steps[None, :] >= lengths[:, None]


def conv_output_length(length: int, kernel: int, stride: int) -> int:
    """Frames a valid (unpadded) convolution yields from ``length`` inputs."""
    return max(0, math.floor((length - kernel) / stride) + 1)
