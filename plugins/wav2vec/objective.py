"""wav2vec 1.0's future-step contrastive objective (fairseq ``wav2vec`` model + criterion)."""

from __future__ import annotations

import math
from typing import Any

import attrs
from torch import Tensor, nn

from w2v.config import check, field, real, size
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Batch, ModelOutput, Objective, ObjectiveOutput, Signal
from w2v.plugin_manager import component_name

from .layers import prediction_offset
from .negatives import fairseq_negatives, sample_negatives
from .prediction import StepPredictionHead, contrastive_loss, step_logits


@attrs.define(kw_only=True)
class FutureContrastiveConfig:
    prediction_steps: int = size(12, 1, 256, "K: future steps predicted from each context frame")
    num_negatives: int = size(10, 0, 4096, "distractors per target from the same utterance")
    cross_sample_negatives: int = size(0, 0, 4096, "extra distractors per target from any "
                                                   "utterance of the batch")
    sample_distance: int | None = size(None, 1, 1 << 20, "draw same-utterance distractors "
                                                         "within this many frames of the target "
                                                         "(null: the whole utterance)")
    offset: int | None = size(None, 0, 1 << 16, "frames from a context to its first target; null "
                                                "derives ceil(receptive field / stride) from the "
                                                "model's encoder (3 for wav2vec base)")
    infonce: bool = field(False, "cross-entropy over [positive, distractors] instead of binary "
                                 "cross-entropy")
    balanced_classes: bool = field(False, "BCE: weight distractors by 1/num_negatives")
    prediction_dropout: float = real(0.0, 0.0, 1.0, "dropout on the step predictions (fairseq "
                                                    "dropout, in the prediction model)")
    context_dropout: float = real(0.0, 0.0, 1.0, "dropout on the context network output "
                                                 "(fairseq dropout_agg)")
    aux_loss_weight: float = real(1.0, 0.0, None, "weight of the quantizer's auxiliary loss "
                                                  "(k-means commitment), times the sample size")
    diversity_weight: float = real(0.0, 0.0, None, "weight of the Gumbel diversity term G*V - "
                                                   "prob_perplexity (unnormalised, as fairseq "
                                                   "wav2vec 1.0), times the sample size")
    fairseq_compat: bool = field(False, "sample distractors exactly as fairseq does, quirks "
                                        "included (see the objective's documentation)")

    def __attrs_post_init__(self) -> None:
        check(self.num_negatives + self.cross_sample_negatives > 0, "num_negatives",
              "the objective needs at least one distractor per target.",
              "Set `num_negatives` (or `cross_sample_negatives`) above 0.")


def aggregator_is_causal(aggregator: nn.Module) -> bool:
    """Whether the aggregator's *wiring* keeps frame t from reading frames after t.

    ``produces().causal`` cannot decide this alone: it is also False when the
    *upstream* leaks (a ``GroupNorm(1, C)`` encoder), and wav2vec 1.0 parity
    keeps that leak. So, in order:

    1. ``structurally_causal`` (bool), declared by aggregators that know their
       wiring apart from normalisation statistics (the conv and GRU
       aggregators: always True);
    2. a boolean ``causal`` attribute (the wav2vec 2.0 Transformer's causal
       mode: causal attention and a left-padded positional conv);
    3. ``produces().causal``.
    """
    for name in ("structurally_causal", "causal"):
        declared = getattr(aggregator, name, None)
        if isinstance(declared, bool):
            return declared
    return bool(aggregator.produces().causal)


class FutureContrastiveObjective(Objective):
    """Predict the encoder output ``K`` steps ahead of each context frame, against distractors.

    With z the (optionally quantized) encoder output and c the aggregator
    output, step ``i = 0..K-1`` of context ``c_t`` scores
    ``h_i(c_t) . z_{t+offset+i}`` against the same ``h_i(c_t)`` dotted with
    the distractors of target position ``t+offset+i``: ``num_negatives``
    frames of the same utterance (with replacement, never the target itself)
    plus ``cross_sample_negatives`` frames of any utterance, one set per target
    position shared by every step that scores it. ``offset`` defaults to
    ``ceil(receptive_field / stride)`` of the model's encoder: the first frame
    whose receptive field does not overlap the context frame's.

    The loss is summed binary cross-entropy with logits (``balanced_classes``:
    distractor weight ``1/num_negatives``) or cross-entropy (``infonce``);
    ``sample_size`` is the number of positives. Stats: ``loss_bits`` (loss
    per positive in bits, fairseq's logged loss), ``accuracy`` (positives
    scored above all their distractors), quantizer stats when quantized.
    The model's ``quantize`` setting decides what is quantized: ``input``
    feeds code vectors to the aggregator, ``targets`` scores against them,
    ``both`` does both (vq-wav2vec: fairseq quantizes z once and uses it for
    both). With a quantizer, ``aux_loss_weight * aux_loss`` and ``diversity_weight *
    (G*V - prob_perplexity)``, each times the sample size, are added (fairseq
    ``loss_weights``).

    Distractor sampling fixes three fairseq quirks by default; with
    ``fairseq_compat: true`` they are replicated (see
    :func:`~w2v.plugins.wav2vec.negatives.fairseq_negatives`):
    ``sample_distance`` draws from the first ``d`` frames (and offsets
    utterances by ``d``), cross-sample exclusion compares the flat ``B*T``
    index with the local ``t``, and the drawn index layout is read back
    transposed so a target can be its own distractor. Compatible sampling
    ignores padding (fairseq crops batches to one length).

    Tests may inject distractors as ``batch.extra["neg_idx"]``: ``[B, T, N]``
    long flat indices into the ``B*T`` target frames.

    Built as ``FutureContrastiveObjective(config, context_dim, target_dim, codebook_size=0)``:
    the settings from :class:`FutureContrastiveConfig`; the widths of the context and
    target frames and the quantizer's ``G*V`` (0 without one) are wiring, which
    :meth:`from_config` reads from the model.

    The model must have an aggregator whose wiring is causal (see
    :func:`aggregator_is_causal`); :meth:`check_model` raises
    :class:`~w2v.errors.FitError` otherwise.
    """

    Config = FutureContrastiveConfig

    def __init__(self, config: FutureContrastiveConfig, context_dim: int, target_dim: int,
                 codebook_size: int = 0) -> None:
        super().__init__()
        self.codebook_size = codebook_size      # G*V: the diversity term is unnormalised
        self.head = StepPredictionHead(context_dim, target_dim, config.prediction_steps)
        self.num_negatives = config.num_negatives
        self.cross_sample_negatives = config.cross_sample_negatives
        self.sample_distance = config.sample_distance
        self.offset_override = config.offset
        self.offset = config.offset     # resolved from the model by from_config
        self.infonce = config.infonce
        self.balanced_classes = config.balanced_classes
        self.prediction_dropout = nn.Dropout(config.prediction_dropout)
        self.context_dropout = nn.Dropout(config.context_dropout)
        self.aux_loss_weight = config.aux_loss_weight
        self.diversity_weight = config.diversity_weight
        self.fairseq_compat = config.fairseq_compat

    @classmethod
    def from_config(cls, config: FutureContrastiveConfig, upstream: Signal | None = None, *,
                    model: nn.Module | None = None, **context: Any
                    ) -> "FutureContrastiveObjective":
        """Head widths come from ``model`` (context and target widths) when given, else both
        from ``upstream`` (the context signal). ``w2v.build.build_objective`` then runs
        :meth:`check_model`."""
        codebook_size = 0
        if model is not None:
            context_dim, target_dim = model.context_signal().dim, model.target_signal().dim
            quantizer = model.quantizer
            if quantizer is not None:
                codebook_size = quantizer.groups * quantizer.num_vars
        elif upstream is not None:
            context_dim = target_dim = upstream.dim
        else:
            raise ConfigError("the future_contrastive objective needs the model (or its context "
                              "signal) to size its prediction heads.")
        objective = cls(config, context_dim, target_dim, codebook_size)
        if model is not None:
            objective.offset = objective.offset_for(model)
        return objective

    # ------------------------------------------------------------------ checks
    def offset_for(self, model: nn.Module) -> int:
        """The target offset: the override, else ``ceil(RF / stride)`` of the model's encoder."""
        if self.offset_override is not None:
            return self.offset_override
        local = model.local_signal()
        return prediction_offset(local.receptive_field, local.stride)

    def check_model(self, model: nn.Module) -> None:
        me = "objective `future_contrastive`"
        if getattr(model, "aggregator", None) is None:
            raise FitError(f"{me} predicts future frames from a context network, but the model "
                           "has no aggregator.", hint="Add `model.aggregator` (e.g. "
                           "`name: wav2vec_conv_aggregator`).")
        agg = component_name("aggregator", model.aggregator)
        if not aggregator_is_causal(model.aggregator):
            raise FitError(
                f"{me} and {agg} do not fit: the aggregator is not causal, so each context "
                "frame would see the future frames it must predict.",
                hint="Use a causal aggregator (wav2vec_conv_aggregator, gru, or a Transformer "
                     "in causal mode).")
        context_dim, target_dim = model.context_signal().dim, model.target_signal().dim
        if (context_dim, target_dim) != (self.head.context_dim, self.head.target_dim):
            source = component_name("quantizer", model.quantizer) if model.quantizes_targets else \
                component_name("encoder", model.encoder)
            raise FitError(
                f"{me} was sized for context width {self.head.context_dim} and target width "
                f"{self.head.target_dim}, but {agg} produces {context_dim} and the targets "
                f"({source}) have {target_dim}.",
                hint="Build the objective with `model=` so its heads follow the model.")

    # ----------------------------------------------------------------- forward
    def negatives(self, batch: Batch, lengths: Tensor, max_len: int) -> Tensor:
        """``[B, T, N]`` flat distractor indices: injected, fairseq-compatible or fixed."""
        injected = batch.extra.get("neg_idx")
        if injected is not None:
            if injected.shape[:2] != (lengths.shape[0], max_len):
                raise ValueError(f"batch.extra['neg_idx'] must be [B, T, N] = [{lengths.shape[0]}, "
                                 f"{max_len}, N], found {list(injected.shape)}.")
            return injected.to(lengths.device).long()
        if self.fairseq_compat:
            return fairseq_negatives(lengths.shape[0], max_len, self.num_negatives,
                                     self.cross_sample_negatives,
                                     sample_distance=self.sample_distance, device=lengths.device)
        return sample_negatives(lengths, max_len, self.num_negatives, self.cross_sample_negatives,
                                sample_distance=self.sample_distance)

    targets = "all"

    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        targets = output.target_vectors
        lengths = output.frame_lengths()
        T = targets.shape[1]
        if self.offset is None:
            raise ConfigError("the future_contrastive objective was built without its model, "
                              "so it cannot derive the target offset.",
                              hint="Build it with `model=` or set `offset`.")
        predictions = self.prediction_dropout(self.head(self.context_dropout(output.context)))
        logits, valid = step_logits(predictions, targets, self.negatives(batch, lengths, T),
                                    lengths, self.offset)
        weight = 1.0 / self.num_negatives if self.balanced_classes and self.num_negatives else 1.0
        loss, sample_size, correct = contrastive_loss(logits, valid, infonce=self.infonce,
                                                      negative_weight=weight)
        positives = sample_size.clamp(min=1).to(loss.dtype)
        stats: dict[str, Any] = {"accuracy": correct.to(loss.dtype) / positives}
        if output.quantized:
            quantized = output.quantized[0]
            stats.update(quantized.stats)
            extra = self._quantizer_loss(quantized)
            if extra is not None:
                stats["contrastive_bits"] = loss.detach() / positives / math.log(2)
                stats["quantizer_loss"] = extra.detach()
                loss = loss + extra * sample_size
        stats["loss_bits"] = loss.detach() / positives / math.log(2)
        return ObjectiveOutput(loss=loss, sample_size=sample_size, stats=stats)

    def _quantizer_loss(self, quantized) -> Tensor | None:
        """Weighted quantizer terms per positive (fairseq ``loss_weights``), or None."""
        terms = []
        if quantized.aux_loss is not None and self.aux_loss_weight:
            terms.append(self.aux_loss_weight * quantized.aux_loss.float())
        if quantized.diversity is not None and self.diversity_weight:
            terms.append(self.diversity_weight * self.codebook_size * quantized.diversity.float())
        return sum(terms) if terms else None
