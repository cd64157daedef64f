"""Distractor sampling for the wav2vec 2.0 contrastive objective.

Masked targets are kept flat: ``y`` ``[M, D]`` holds the masked frames of
utterance 0, then utterance 1, ... (``y = features[mask]``), ``counts[b]``
frames each. For each masked frame, ``num_negatives`` distractors are drawn
uniformly with replacement from the *other* masked frames of the same
utterance (the draw is shifted past the positive, so it is never drawn), and
``cross_sample_negatives`` from the other masked frames of the whole batch
(never the positive itself, also for unequal counts). An utterance with a
single masked frame gets itself as distractor (the objective then gives that
logit ``-inf``).

Same-utterance draws have the distribution of fairseq's ``sample_negatives``;
cross-sample draws do not: fairseq excludes the *local* index ``t`` (a frame
of the first utterance) instead of the positive's flat index ``b * N + t``, so
its positive can be drawn as a distractor, and with both kinds on its index
reshape mixes them (target ``t``'s slots hold draws made for other targets).
:func:`fairseq_negative_indices` reproduces fairseq's sampler exactly
(``fairseq_compat``), from fairseq's random stream.

Hugging Face's ``sampled_negative_indices`` are flat indices over ``B * T``
of the full sequence; :func:`negatives_from_hf` and :func:`negatives_to_hf`
convert.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _uniform_other(n: Tensor, own: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """``[M, k]`` draws from ``[0, n)`` excluding ``own`` (``[M]`` each); ``own`` when n <= 1."""
    u = torch.rand((own.shape[0], k), device=own.device, generator=generator)
    r = (u * (n - 1).clamp(min=0)[:, None]).long()
    r = r + (r >= own[:, None]).long()
    return torch.where((n > 1)[:, None], r, own[:, None].expand_as(r))


def sample_negative_indices(counts: Tensor, num_negatives: int, cross_sample_negatives: int = 0,
                            *, total: int | None = None,
                            generator: torch.Generator | None = None) -> Tensor:
    """``[M, num_negatives + cross_sample_negatives]`` flat indices into ``y`` ``[M, D]``.

    Args:
        counts: ``[B]`` masked frames per utterance (rows of ``y`` in utterance order).
        total: ``M = counts.sum()`` if the caller knows it (avoids a device sync).
    """
    counts = counts.long()
    M = int(counts.sum()) if total is None else total
    device = counts.device
    owner = torch.repeat_interleave(torch.arange(counts.shape[0], device=device), counts,
                                    output_size=M)
    first = (torch.cumsum(counts, 0) - counts)[owner]                # [M] start of own utterance
    flat = torch.arange(M, device=device)
    parts = []
    if num_negatives > 0:
        parts.append(first[:, None] + _uniform_other(counts[owner], flat - first, num_negatives,
                                                     generator))
    if cross_sample_negatives > 0:
        everyone = torch.full((M,), M, dtype=torch.long, device=device)
        parts.append(_uniform_other(everyone, flat, cross_sample_negatives, generator))
    if not parts:
        return torch.zeros(M, 0, dtype=torch.long, device=device)
    return torch.cat(parts, dim=1)


def fairseq_negative_indices(counts: Tensor, num_negatives: int, cross_sample_negatives: int = 0,
                             *, total: int | None = None,
                             generator: torch.Generator | None = None) -> Tensor:
    """``[M, num_negatives + cross_sample_negatives]`` indices into ``y`` ``[M, D]`` exactly as
    fairseq ``Wav2Vec2Model.sample_negatives`` draws them (fairseq_compat).

    fairseq needs ``N`` masked frames in every utterance (``require_same_masks``). Per
    utterance it draws ``num_negatives * N`` same-utterance indices in target-major order,
    each shifted past its own target; then ``cross_sample_negatives * N`` indices over all
    ``B * N`` frames, shifted past the *local* index ``t`` (so the positive ``b * N + t``
    can be drawn for ``b > 0``); concatenates the two along the row and reads the row back
    as ``[N, num_negatives + cross_sample_negatives]``. With both counts above zero that
    read-back mixes them: target ``t`` gets the draws at positions ``t*K .. t*K+K-1`` of the
    concatenated row, made for other targets, some of them the positive (about 3 % of the
    distractors with B = 3 and 25 of each). The draws come from ``generator`` (CPU) or the
    global CPU stream, as fairseq's ``torch.randint`` without a device does.
    """
    counts = counts.long()
    B = counts.shape[0]
    N = int(counts[0]) if B else 0
    if B and bool((counts != N).any()):
        raise ValueError(f"fairseq's negative sampler needs the same number of masked frames "
                         f"in every utterance, found {counts.tolist()} (use the masker's "
                         f"require_same_masks).")
    if N < 2:
        raise ValueError(f"fairseq's negative sampler needs at least 2 masked frames per "
                         f"utterance, found {N}.")
    parts = []
    if num_negatives > 0:
        excluded = torch.arange(N).repeat_interleave(num_negatives)
        idx = torch.randint(0, N - 1, (B, num_negatives * N), generator=generator)
        idx = idx + (idx >= excluded).long()
        parts.append(idx + torch.arange(B)[:, None] * N)
    if cross_sample_negatives > 0:
        excluded = torch.arange(N).repeat_interleave(cross_sample_negatives)
        idx = torch.randint(0, B * N - 1, (B, cross_sample_negatives * N), generator=generator)
        parts.append(idx + (idx >= excluded).long())
    if not parts:
        return torch.zeros(B * N, 0, dtype=torch.long, device=counts.device)
    flat = torch.cat(parts, dim=1)                                   # [B, N*Ks + N*Kc]
    return flat.view(B * N, num_negatives + cross_sample_negatives).to(counts.device)


def sample_negatives(y: Tensor, num_negatives: int, cross_sample_negatives: int = 0,
                     generator: torch.Generator | None = None, neg_idx: Tensor | None = None
                     ) -> tuple[Tensor, Tensor]:
    """fairseq-shaped sampling for equal counts: ``y`` ``[B, N, D]`` masked targets.

    Returns ``(negs [K, B, N, D], neg_idx [B, N, K])`` with ``neg_idx`` flat
    over ``B * N``; pass ``neg_idx`` to reuse given indices.
    """
    B, N, D = y.shape
    if neg_idx is None:
        counts = torch.full((B,), N, dtype=torch.long, device=y.device)
        neg_idx = sample_negative_indices(counts, num_negatives, cross_sample_negatives,
                                          total=B * N, generator=generator).view(B, N, -1)
    negs = y.reshape(B * N, D)[neg_idx.reshape(-1)].view(B, N, -1, D).permute(2, 0, 1, 3)
    return negs, neg_idx


def negatives_from_hf(hf_idx: Tensor, mask: Tensor) -> Tensor:
    """Hugging Face ``sampled_negative_indices`` ``[B, T, K]`` (flat over ``B*T``) to
    ``[M, K]`` indices into ``y = x[mask]`` (rows: masked frames in order)."""
    ordinal = torch.cumsum(mask.reshape(-1).long(), 0) - 1          # flat B*T -> masked ordinal
    return ordinal[hf_idx[mask].long()]


def negatives_to_hf(neg_idx: Tensor, mask: Tensor) -> Tensor:
    """``[M, K]`` indices into ``x[mask]`` to Hugging Face's ``[B, T, K]`` flat ``B*T``
    indices (unmasked rows hold ``b * T``, as Hugging Face's sampler leaves them)."""
    B, T = mask.shape
    position = mask.reshape(-1).nonzero().squeeze(1)                 # masked ordinal -> flat B*T
    out = (torch.arange(B, device=mask.device) * T)[:, None, None].expand(B, T, neg_idx.shape[1])
    out = out.clone()
    out[mask] = position[neg_idx]
    return out
