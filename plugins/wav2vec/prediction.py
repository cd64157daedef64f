"""Per-step prediction heads, step logits and the loss of wav2vec 1.0's future-step objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class StepPredictionHead(nn.Module):
    """fairseq's prediction head: ``K`` affine maps from context to target space that share
    one bias (``ConvTranspose2d(D_ctx, D_z, (1, K))``), as one batched einsum.

    ``weight`` ``[K, D_ctx, D_z]`` is fairseq's ``[D_ctx, D_z, 1, K]`` weight permuted
    (``w[:, :, 0, :].permute(2, 0, 1)``); ``bias`` ``[D_z]`` is its bias, added at every
    step. Initialised as that layer is by default (drawn in fairseq's layout, so the
    same RNG state gives fairseq's values): weight and bias uniform in
    ``±1/sqrt(D_z * K)`` (std 0.0074 at 512 -> 512, K = 12).

    ``forward(c [B, T, D_ctx]) -> [B, T, K, D_z]``.
    """

    def __init__(self, context_dim: int, target_dim: int, steps: int) -> None:
        super().__init__()
        self.context_dim, self.target_dim, self.steps = context_dim, target_dim, steps
        fairseq_layer = nn.ConvTranspose2d(context_dim, target_dim, (1, steps))
        self.weight = nn.Parameter(
            fairseq_layer.weight.detach()[:, :, 0, :].permute(2, 0, 1).contiguous())
        self.bias = nn.Parameter(fairseq_layer.bias.detach().clone())

    def forward(self, c: Tensor) -> Tensor:
        return torch.einsum("btc,kcd->btkd", c, self.weight) + self.bias


def step_logits(predictions: Tensor, targets: Tensor, neg_idx: Tensor, lengths: Tensor,
                offset: int) -> tuple[Tensor, Tensor]:
    """Scores of every prediction against its positive and distractors.

    Args:
        predictions: ``[B, T, K, D]``, step ``i`` of context ``t`` predicts
            the target at ``t + offset + i``.
        targets: ``[B, T, D]``.
        neg_idx: ``[B, T, N]`` flat indices into ``targets.view(B*T, D)``:
            the distractors of each target position.
        lengths: ``[B]`` valid frames.
        offset: frames between a context and its first target.

    Returns:
        ``logits [B, T, K, 1+N]`` in fp32 (column 0 the positive) and
        ``valid [B, T, K]`` bool, True where ``t + offset + i < lengths[b]``.
    """
    B, T, K, D = predictions.shape
    candidates = torch.cat([targets.unsqueeze(2), targets.reshape(B * T, D)[neg_idx]], dim=2)
    logits = predictions.new_zeros(B, T, K, candidates.shape[2], dtype=torch.float32)
    for i in range(min(K, T - offset)):  # one einsum per step; K is small (12)
        shift = offset + i
        logits[:, :T - shift, i] = torch.einsum(
            "btd,btnd->btn", predictions[:, :T - shift, i], candidates[:, shift:]).float()
    t = torch.arange(T, device=lengths.device)[None, :, None]
    i = torch.arange(K, device=lengths.device)[None, None, :]
    valid = t + offset + i < lengths[:, None, None]
    return logits, valid


def contrastive_loss(logits: Tensor, valid: Tensor, *, infonce: bool = False,
                     negative_weight: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Summed loss over valid predictions.

    Binary cross-entropy with logits (positive label 1, distractors 0 with
    weight ``negative_weight``; fairseq ``balanced_classes`` uses
    ``1/num_negatives``), or with ``infonce`` cross-entropy over
    ``[positive, distractors]``.

    Returns ``(loss, sample_size, correct)``: the summed loss, the number of
    valid positives, and how many of them score strictly above all their
    distractors.
    """
    mask = valid.to(logits.dtype)
    if infonce:
        flat = logits.reshape(-1, logits.shape[-1])
        zeros = torch.zeros(flat.shape[0], dtype=torch.long, device=logits.device)
        per = F.cross_entropy(flat, zeros, reduction="none").view(valid.shape)
    else:
        labels = torch.zeros_like(logits)
        labels[..., 0] = 1.0
        weights = torch.full_like(logits, negative_weight)
        weights[..., 0] = 1.0
        per = F.binary_cross_entropy_with_logits(logits, labels, weights, reduction="none").sum(-1)
    loss = (per * mask).sum()
    with torch.no_grad():
        correct = ((logits[..., 0] > logits[..., 1:].amax(-1)) & valid).sum()
    return loss, valid.sum(), correct
