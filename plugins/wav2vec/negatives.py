"""Distractor sampling for wav2vec 1.0's future-step contrastive objective.

Every function returns ``[B, T, N]`` long indices into the flattened
``[B*T]`` frames: the distractors of target position ``(b, t)``, shared by
all prediction steps that score that target.

Fixed sampling (the default): for each valid target ``(b, t)``,

* ``N`` same-utterance distractors uniformly with replacement from the valid
  frames of utterance ``b`` other than ``t`` (with ``sample_distance d``:
  from the frames within ``d`` of ``t``);
* ``Nc`` cross-sample distractors uniformly from all valid frames of the
  batch other than ``(b, t)`` itself.

:func:`fairseq_negatives` reproduces fairseq's sampling, quirks included
(see its docstring). It ignores ``lengths``: fairseq crops batches to one
length.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _uniform_below(count: Tensor, shape: tuple[int, ...], generator: torch.Generator | None
                   ) -> Tensor:
    """Integers uniform in ``[0, count)`` (``count`` broadcast to ``shape``; 0 where count <= 0)."""
    u = torch.rand(shape, device=count.device, generator=generator)
    c = count.clamp(min=1)
    return torch.minimum((u * c).long(), c - 1)


def same_utterance_negatives(lengths: Tensor, max_len: int, num: int, *,
                             sample_distance: int | None = None,
                             generator: torch.Generator | None = None) -> Tensor:
    """``[B, T, num]`` flat indices of distractors from each target's own utterance.

    Target ``t`` of utterance ``b`` draws from ``[lo, hi) \\ {t}`` with
    ``lo = 0, hi = lengths[b]``, or with ``sample_distance d``
    ``lo = max(0, t - d), hi = min(lengths[b], t + d + 1)``. A target with no
    other frame to draw from (a one-frame utterance) gets itself.
    """
    B, T = lengths.shape[0], max_len
    t = torch.arange(T, device=lengths.device)[None, :, None]            # [1, T, 1]
    length = lengths[:, None, None]                                      # [B, 1, 1]
    if sample_distance is None:
        lo = torch.zeros_like(t)
        hi = length.expand(B, T, 1)
    else:
        lo = (t - sample_distance).clamp(min=0)
        hi = torch.minimum(t + sample_distance + 1, length)
    count = hi - lo - 1                                                  # excluding t itself
    idx = lo + _uniform_below(count, (B, T, num), generator)
    idx = idx + (idx >= t).long()                                        # skip the target
    own = torch.minimum(t, (length - 1).clamp(min=0)).expand(B, T, num)
    idx = torch.where(count > 0, idx, own)
    row = torch.arange(B, device=lengths.device)[:, None, None] * T
    return row + idx


def cross_sample_negatives(lengths: Tensor, max_len: int, num: int, *,
                           generator: torch.Generator | None = None) -> Tensor:
    """``[B, T, num]`` flat indices of distractors from any valid frame of the batch except the
    target itself."""
    B, T = lengths.shape[0], max_len
    ends = torch.cumsum(lengths, 0)                                      # [B]
    starts = ends - lengths
    total = ends[-1]
    t = torch.arange(T, device=lengths.device)[None, :, None]
    own = starts[:, None, None] + torch.minimum(t, (lengths[:, None, None] - 1).clamp(min=0))
    rank = _uniform_below(total - 1, (B, T, num), generator)             # rank among valid frames
    rank = rank + (rank >= own).long()
    rank = torch.where(total > 1, rank, own.expand(B, T, num))
    rank = torch.minimum(rank, (total - 1).clamp(min=0))
    utt = torch.searchsorted(ends, rank, right=True)
    return utt * T + (rank - starts[utt])


def sample_negatives(lengths: Tensor, max_len: int, num_negatives: int,
                     cross_sample_negatives_count: int = 0, *, sample_distance: int | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """``[B, T, N + Nc]``: same-utterance distractors, then cross-sample ones."""
    parts = []
    if num_negatives:
        parts.append(same_utterance_negatives(lengths, max_len, num_negatives,
                                              sample_distance=sample_distance,
                                              generator=generator))
    if cross_sample_negatives_count:
        parts.append(cross_sample_negatives(lengths, max_len, cross_sample_negatives_count,
                                            generator=generator))
    return torch.cat(parts, dim=-1)


def fairseq_negatives(batch_size: int, max_len: int, num_negatives: int,
                      cross_sample_negatives_count: int = 0, *, sample_distance: int | None = None,
                      device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> Tensor:
    """``[B, T, N + Nc]`` exactly as fairseq's ``Wav2VecPredictionsModel.sample_negatives``.

    Its quirks, all kept here:

    1. ``sample_distance d`` draws from the *first* ``min(T, d)`` frames of the
       utterance instead of frames near the target, and offsets utterance
       ``b`` by ``b * min(T, d)`` instead of ``b * T`` in the flat index, so
       utterances ``b > 0`` draw from the wrong rows.
    2. Cross-sample distractors exclude the flat index ``t`` (a frame of the
       first utterance), not the target's own flat index ``b*T + t``.
    3. Indices are drawn in target-major order (``[T, N]``, the exclusion of
       entry ``k`` is target ``k // N``) but read back distractor-major
       (``[N, T]``), so the frame excluded for target ``t``'s ``n``-th
       distractor is ``(n*T + t) // N``, generally not ``t``: a target can
       be drawn as its own distractor.
    4. Before the real draws, one ``randint(0, high, (B, N*T))`` is drawn and
       thrown away, so the random stream after the same seed is fairseq's.

    The draws are made on the CPU (fairseq's ``torch.randint`` has no device),
    from ``generator`` (a CPU generator) or the global CPU stream, and moved to
    ``device``: with the same seed, the indices are fairseq's on any device.
    """
    B, T = batch_size, max_len
    high = T if sample_distance is None else min(T, sample_distance)
    if high <= 1:
        raise ValueError(f"fairseq negative sampling needs at least 2 frames, found {high}.")
    torch.randint(0, high, (B, num_negatives * T), generator=generator)   # fairseq's unused draw
    parts = []
    if num_negatives:
        excluded = torch.arange(T).repeat_interleave(num_negatives)
        idx = torch.randint(0, high - 1, (B, T * num_negatives), generator=generator)
        idx = idx + (idx >= excluded).long()
        parts.append(idx + torch.arange(B)[:, None] * high)
    if cross_sample_negatives_count:
        excluded = torch.arange(T).repeat_interleave(cross_sample_negatives_count)
        idx = torch.randint(0, B * T - 1, (B, T * cross_sample_negatives_count),
                            generator=generator)
        parts.append(idx + (idx >= excluded).long())
    flat = torch.cat(parts, dim=1)
    out = flat.view(B, num_negatives + cross_sample_negatives_count, T).transpose(1, 2)
    return out.to(device)
