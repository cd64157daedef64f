"""The wav2vec 2.0 masked contrastive objective (fairseq ``wav2vec2`` + ``wav2vec`` criterion).

The objective asks the model's forward for a span mask (sampled by the model's
masker) and the unmasked targets at the masked frames (after ``dropout_features``,
quantized when the model quantizes targets); at every masked frame it scores ``final_proj(context)`` against
``project_q(quantized target)`` and distractors by cosine / ``logit_temp``
(a distractor equal to its positive gets ``-inf``); the contrastive loss is
summed over masked frames and the extra terms (diversity, feature penalty,
a quantizer's auxiliary loss) are multiplied by that count, as fairseq does.

Tests and parity checks may inject ``batch.extra["mask"]`` (``[B, T]`` bool)
and ``batch.extra["neg_idx"]`` (``[M, K]`` indices into the masked frames in
order; see :func:`~w2v.plugins.wav2vec2.negatives.negatives_from_hf`).
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import torch
from torch import Tensor, nn

from w2v.config import ComponentSpec, check, component, field, real, size
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Batch, Masker, ModelOutput, Objective, ObjectiveOutput, Signal

from .contrastive_loss import ContrastiveLoss, ContrastiveScores, InfoNCE
from .contrastive_scores import candidate_logits, indexed_logits
from .negatives import fairseq_negative_indices, sample_negative_indices


@attrs.define(kw_only=True)
class MaskedContrastiveConfig:
    num_negatives: int = size(100, 0, 10_000, "distractors per masked frame from the same utterance")
    cross_sample_negatives: int = size(0, 0, 10_000, "distractors from any utterance of the batch")
    codebook_negatives: int = size(0, 0, 10_000, "distractors drawn at random from the codebook")
    logit_temp: float = real(0.1, 1e-4, 100.0, "temperature of the cosine logits")
    final_dim: int = size(256, 0, 1 << 16, "width of the contrastive space (0 = context width)")
    target_glu: bool = field(False, "a Linear + GLU on targets and distractors")
    loss_weights: list[float] = field(
        [0.1, 10.0], "weights of the extra terms (diversity, feature penalty), each times the "
                     "number of masked frames; 0 switches a term off")
    aux_loss_weight: float = real(1.0, 0.0, None, "weight of a quantizer's auxiliary loss (k-means "
                                                  "commitment), times the number of masked frames")
    fairseq_compat: bool = field(False, "draw distractors with fairseq's sampler: cross-sample "
                                        "draws may hit the positive (see docs/fidelity.md)")
    contrastive_loss: ComponentSpec | None = component(
        "contrastive_loss", {"name": "infonce"}, "how predictions are scored against "
        "(positive, distractors): `infonce`, or `pml` for a pytorch-metric-learning loss")

    def __attrs_post_init__(self) -> None:
        check(len(self.loss_weights) <= 2, "loss_weights",
              f"expected at most 2 weights (diversity, feature penalty), found {self.loss_weights}.")
        check(self.num_negatives + self.cross_sample_negatives + self.codebook_negatives > 0,
              "num_negatives", "the contrastive objective needs at least one distractor.",
              "Set `num_negatives` (fairseq uses 100).")


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, Tensor) else value


class MaskedContrastiveObjective(Objective):
    """wav2vec 2.0 pretraining loss; owns ``project_q``, ``final_proj`` (and ``target_glu``)
    and the contrastive scorer the config names (:class:`InfoNCE` when it names none).

    ``MaskedContrastiveObjective(config, context_dim, target_dim, codebook)``: the widths of
    the context network's output and of the targets (quantizer output, or local features);
    ``codebook`` draws ``n`` code vectors ``[n, D]`` from the model's codebook (for
    ``codebook_negatives``; ``from_config`` takes the model's quantizer's).
    """

    Config = MaskedContrastiveConfig

    def __init__(self, config: MaskedContrastiveConfig, context_dim: int, target_dim: int,
                 codebook: Callable[[int], Tensor] | None = None) -> None:
        super().__init__()
        self.codebook_sampler = codebook
        self.config = config
        final_dim = config.final_dim or context_dim
        self.final_dim = final_dim
        self.project_q = nn.Linear(target_dim, final_dim)
        self.final_proj = nn.Linear(context_dim, final_dim)
        self.target_glu = (nn.Sequential(nn.Linear(final_dim, 2 * final_dim), nn.GLU())
                           if config.target_glu else None)
        self.contrastive_loss: ContrastiveLoss = (
            config.contrastive_loss.build() if config.contrastive_loss is not None else InfoNCE())
        weights = list(config.loss_weights) + [0.0] * (2 - len(config.loss_weights))
        self.diversity_weight, self.penalty_weight = weights

    @classmethod
    def from_config(cls, config: MaskedContrastiveConfig, upstream: Signal | None = None, *,
                    model: nn.Module | None = None, target_dim: int | None = None,
                    **context: Any) -> "MaskedContrastiveObjective":
        if upstream is None and model is None:
            raise ConfigError("the masked contrastive objective needs the model it trains.")
        context_dim = upstream.dim if upstream is not None else model.context_signal().dim
        if target_dim is None:
            target_dim = cls.target_width(model) if model is not None else context_dim
        codebook = model.quantizer.sample_from_codebook \
            if model is not None and model.quantizes_targets else None
        return cls(config, context_dim, target_dim, codebook)

    @staticmethod
    def target_width(model: nn.Module) -> int:
        return model.target_signal().dim

    # -------------------------------------------------------------- checks
    def check_model(self, model: nn.Module) -> None:
        masker = getattr(model, "masker", None)
        if not isinstance(masker, Masker):
            raise FitError("objective `masked_contrastive` masks frames, but the model has no "
                           "masker.", key="model.masker",
                           hint="Add `model: {masker: {name: span}}`.")
        aggregator = getattr(model, "aggregator", None)
        if aggregator is None:
            raise FitError("objective `masked_contrastive` predicts masked frames from context, "
                           "but the model has no aggregator.", key="model.aggregator")
        if masker.dim != aggregator.input_dim:
            raise FitError(f"the masker's embedding has width {masker.dim} but the aggregator "
                           f"takes width {aggregator.input_dim}.", key="model.masker")
        ctx = model.context_signal().dim
        if self.final_proj.in_features != ctx:
            raise FitError(f"objective `masked_contrastive` was built for context width "
                           f"{self.final_proj.in_features}, but the aggregator produces {ctx}.",
                           key="objective")
        tgt = self.target_width(model)
        if self.project_q.in_features != tgt:
            raise FitError(f"objective `masked_contrastive` was built for target width "
                           f"{self.project_q.in_features}, but the model's targets have width "
                           f"{tgt}.", key="objective")
        if self.config.codebook_negatives and not model.quantizes_targets:
            raise FitError("`codebook_negatives` needs a quantizer on the targets.",
                           key="objective.codebook_negatives",
                           hint="Set `model.quantize: targets` with a quantizer, or set "
                                "`codebook_negatives: 0`.")

    # ------------------------------------------------------------- forward
    wants_mask = True
    targets = "masked"

    def request(self, batch: Batch, model: nn.Module, step: int) -> dict[str, Any]:
        """A mask from the model's masker (or the injected ``batch.extra["mask"]``) and the
        unmasked targets at the masked frames."""
        return {"mask": batch.extra.get("mask", True), "targets": "masked"}

    def health_checks(self) -> list:
        from .health import ContrastiveAtChance
        return [ContrastiveAtChance()]

    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        mask, context = output.mask, output.context
        B, T = mask.shape
        y = output.target_vectors                                        # [M, C]
        M = y.shape[0]
        if M == 0:  # nothing masked (tiny inputs): a zero loss that keeps the graph
            return ObjectiveOutput(loss=context.sum() * 0.0, sample_size=0,
                                   stats={"mask_fraction": 0.0})
        y = self.project_q(y)

        neg_idx = batch.extra.get("neg_idx")
        if neg_idx is None:
            sampler = fairseq_negative_indices if self.config.fairseq_compat else \
                sample_negative_indices
            neg_idx = sampler(mask.sum(1), self.config.num_negatives,
                              self.config.cross_sample_negatives, total=M)
        book = None                                                    # [M, n, D]
        if self.config.codebook_negatives:
            n = self.config.codebook_negatives
            book = self.project_q(self.codebook_sampler(M * n)).view(M, n, -1).to(y.dtype)

        pred = self.final_proj(context[mask])                          # [M, D]
        if self.target_glu is not None:  # row-wise, so glu(y)[neg_idx] == glu(y[neg_idx])
            y = self.target_glu(y)
            book = self.target_glu(book) if book is not None else None
        scores = self.indexed_scores(pred, y, neg_idx, book)
        contrastive = self.contrastive_loss(scores)

        loss = contrastive
        stats: dict[str, Any] = {}
        quantized = output.quantized
        target_q = quantized[-1] if quantized else None
        if target_q is not None:
            stats.update({k: _detached(v) for k, v in target_q.stats.items()})
            if target_q.diversity is not None:
                stats["diversity"] = target_q.diversity.detach()
                if self.diversity_weight:
                    loss = loss + self.diversity_weight * target_q.diversity.float() * M
        aux = [q.aux_loss for q in quantized if q.aux_loss is not None]
        if aux:
            aux_total = sum(a.float() for a in aux)
            stats["aux_loss"] = aux_total.detach()
            if self.config.aux_loss_weight:
                loss = loss + self.config.aux_loss_weight * aux_total * M
        if output.penalty is not None:
            stats["penalty"] = output.penalty.detach()
            if self.penalty_weight:
                loss = loss + self.penalty_weight * output.penalty.float() * M

        n = max(M, 1)
        lengths = output.lengths
        valid = float(B * T) if lengths is None else lengths.sum().clamp(min=1)
        stats.update({
            "loss": loss.detach() / n,
            "contrastive": contrastive.detach() / n,
            "accuracy": self.correct(scores.logits).float() / n,
            # the loss of uniform logits: log(valid candidates), per masked frame
            "contrastive_chance": scores.valid.sum(-1).float().log().sum().detach() / n,
            "mask_fraction": M / valid,
        })
        return ObjectiveOutput(loss=loss, sample_size=M, stats=stats)

    def scores(self, pred: Tensor, candidates: Tensor) -> ContrastiveScores:
        """Cosine logits in fp32 of ``pred`` ``[M, D]`` against ``candidates`` ``[M, 1+K, D]``
        (positive first), ``-inf`` where a distractor equals its positive."""
        temp = self.config.logit_temp
        logits, valid = candidate_logits(pred, candidates, temp)
        return ContrastiveScores(logits=logits, predictions=pred, candidates=candidates,
                                 valid=valid, temperature=temp)

    def indexed_scores(self, pred: Tensor, targets: Tensor, neg_idx: Tensor,
                       extra_negatives: Tensor | None = None) -> ContrastiveScores:
        """:meth:`scores` with distractors given as rows ``neg_idx`` ``[M, K]`` of ``targets``
        ``[M, D]`` (then ``extra_negatives`` ``[M, N, D]``); no ``[M, 1+K, D]`` tensor is built
        unless the contrastive loss asks for the candidates."""
        temp = self.config.logit_temp
        logits, valid = indexed_logits(pred, targets, neg_idx, temp, extra_negatives)
        return ContrastiveScores(logits=logits, predictions=pred, valid=valid, temperature=temp,
                                 targets=targets, negative_index=neg_idx.to(targets.device).long(),
                                 extra_negatives=extra_negatives)

    @staticmethod
    def correct(logits: Tensor) -> Tensor:
        """Frames whose positive scores highest; all-equal rows do not count (fairseq)."""
        if logits.numel() == 0:
            return logits.new_zeros((), dtype=torch.long)
        best = logits.argmax(-1) == 0
        worst = logits.argmin(-1) == 0
        return (best & ~worst).sum()
