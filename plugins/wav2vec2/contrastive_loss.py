"""Pluggable contrastive losses (kind ``contrastive_loss``).

A contrastive loss scores each prediction against its candidates (the
positive first, then the distractors) and returns the loss *summed* over
predictions, as the objectives sum over masked frames.

- :class:`InfoNCE`: cross-entropy with target 0 over the cosine logits.
- :class:`PMLContrastiveLoss`: any pytorch-metric-learning loss, fed the
  predictions as anchors and the candidates as reference embeddings, with
  explicit (anchor, positive) and (anchor, negative) pairs.
"""

from __future__ import annotations

import abc
import inspect
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import field, size
from w2v.errors import ConfigError, did_you_mean
from w2v.interfaces import Component, Signal


@attrs.define(kw_only=True)
class ContrastiveScores:
    """What a contrastive loss sees, for ``M`` predictions and ``1 + K`` candidates each.

    The candidate vectors are built only when a loss asks for :attr:`candidates`
    (InfoNCE needs the logits alone): the objective passes the positives and the
    distractors' row indices instead of an ``[M, 1+K, D]`` tensor.

    Attributes:
        logits: ``[M, 1+K]`` fp32 ``cosine / temperature``, ``-inf`` at excluded distractors.
        predictions: ``[M, D]`` context predictions (anchors).
        valid: ``[M, 1+K]`` bool, False at distractors equal to the positive.
        temperature: the logit temperature.
        targets: ``[M, D]`` the positives; distractor ``k`` of prediction ``i`` is
            ``targets[negative_index[i, k]]``.
        negative_index: ``[M, K']`` rows of ``targets``.
        extra_negatives: ``[M, N, D]`` distractors that are not rows of ``targets`` (codebook
            draws), after the indexed ones; K = K' + N.
        candidates: ``[M, 1+K, D]`` given directly instead of the three above.
    """

    logits: Tensor
    predictions: Tensor
    valid: Tensor
    temperature: float
    targets: Tensor | None = None
    negative_index: Tensor | None = None
    extra_negatives: Tensor | None = None
    _candidates: Tensor | None = attrs.field(default=None, alias="candidates")

    @property
    def candidates(self) -> Tensor:
        """``[M, 1+K, D]``: the positive first, then the distractors (built on first use)."""
        if self._candidates is None:
            parts = [self.targets[:, None], self.targets[self.negative_index]]
            if self.extra_negatives is not None:
                parts.append(self.extra_negatives.to(self.targets.dtype))
            self._candidates = torch.cat(parts, dim=1)
        return self._candidates


class ContrastiveLoss(nn.Module, Component, abc.ABC):
    """Scores predictions against (positive, distractors): ``forward(scores) -> summed loss``."""

    kind = "contrastive_loss"

    @abc.abstractmethod
    def forward(self, scores: ContrastiveScores) -> Tensor:
        """Scalar loss summed over the ``M`` predictions."""


@attrs.define(kw_only=True)
class InfoNCEConfig:
    pass


class InfoNCE(ContrastiveLoss):
    """Cross-entropy with the positive (index 0) as target, summed (wav2vec 2.0)."""

    Config = InfoNCEConfig

    @classmethod
    def from_config(cls, config: InfoNCEConfig | None = None, upstream: Signal | None = None,
                    **context) -> "InfoNCE":
        return cls()

    def forward(self, scores: ContrastiveScores) -> Tensor:
        logits = scores.logits.float()
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target, reduction="sum")


@attrs.define(kw_only=True)
class PMLContrastiveLossConfig:
    loss: str = field("NTXentLoss", "a class of pytorch_metric_learning.losses, e.g. NTXentLoss")
    kwargs: dict[str, Any] = field({}, "keyword arguments of that loss, e.g. {temperature: 0.1}")
    chunk_size: int = size(256, 1, 1 << 20, "predictions per call (pair losses build a "
                                            "[chunk, chunk * (1 + K)] similarity matrix)")


class PMLContrastiveLoss(ContrastiveLoss):
    """Adapter for a pytorch-metric-learning loss.

    Each chunk of predictions is the ``embeddings`` batch; its candidates are
    ``ref_emb``; ``indices_tuple = (a1, p, a2, n)`` pairs every prediction with
    its own positive and with each of its valid distractors. PML losses reduce
    to a mean per positive pair, so the chunk loss is multiplied by the chunk
    size to give the sum the objective expects. PML's own distance applies
    (cosine for NTXentLoss); the objective's ``logit_temp`` does not.
    """

    Config = PMLContrastiveLossConfig

    def __init__(self, config: PMLContrastiveLossConfig) -> None:
        super().__init__()
        from pytorch_metric_learning import losses  # a core dependency of w2v

        names = [n for n, c in vars(losses).items()
                 if inspect.isclass(c) and issubclass(c, nn.Module) and n.endswith("Loss")]
        if config.loss not in names:
            raise ConfigError(f"pytorch-metric-learning has no loss `{config.loss}`.", key="loss",
                              hint=did_you_mean(config.loss, names, "losses"))
        try:
            self.loss = getattr(losses, config.loss)(**dict(config.kwargs))
        except TypeError as exc:
            raise ConfigError(f"cannot build {config.loss}({config.kwargs}): {exc}.",
                              key="kwargs") from None
        self.chunk_size = config.chunk_size

    def forward(self, scores: ContrastiveScores) -> Tensor:
        pred, cand, valid = scores.predictions, scores.candidates, scores.valid
        M, C, D = cand.shape
        total = pred.new_zeros((), dtype=torch.float32)
        for lo in range(0, M, self.chunk_size):
            hi = min(M, lo + self.chunk_size)
            m = hi - lo
            rows = torch.arange(m, device=pred.device)
            ok = valid[lo:hi, 1:]                                   # [m, K]
            a2 = rows[:, None].expand(m, C - 1)[ok]
            neg = (rows[:, None] * C + torch.arange(1, C, device=pred.device))[ok]
            pairs = (rows, rows * C, a2, neg)
            ref = cand[lo:hi].reshape(m * C, D).float()
            total = total + self.loss(pred[lo:hi].float(), indices_tuple=pairs, ref_emb=ref) * m
        return total
