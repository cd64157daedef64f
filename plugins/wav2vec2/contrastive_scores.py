"""Cosine logits of predictions against (positive, distractors), with and without candidates.

Both functions give ``[M, 1+K]`` fp32 logits ``cos(prediction, candidate) / temperature``
(each vector L2-normalised with eps 1e-8) and ``-inf`` where a distractor equals its
positive in every element (fairseq ``neg_is_pos``), plus the ``[M, 1+K]`` validity mask.

- :func:`candidate_logits` scores a materialised ``[M, 1+K, D]`` candidate tensor (the
  definition; fairseq builds that tensor).
- :func:`indexed_logits` takes the positives ``[M, D]`` and the distractors as row indices
  ``[M, K]`` into them (wav2vec 2.0 draws every distractor from the batch's targets), and
  never builds ``[M, K, D]``: it multiplies the normalised predictions with the normalised
  targets in row blocks (``[c, D] @ [D, M]``) and gathers the ``K`` scores of each row.
  Duplicates are found through an exact integer key per target row, checked element by
  element only where two keys agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: largest ``[rows, M]`` similarity block computed at once (elements)
BLOCK_ELEMENTS = 1 << 24


def _normalized(x: Tensor) -> Tensor:
    return F.normalize(x.float(), dim=-1, eps=1e-8)


def _finish(logits: Tensor, same: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    valid = torch.cat([torch.ones_like(same[:, :1]), ~same], dim=1)
    return (logits / temperature).masked_fill(~valid, float("-inf")), valid


def candidate_logits(pred: Tensor, candidates: Tensor, temperature: float
                     ) -> tuple[Tensor, Tensor]:
    """``pred`` ``[M, D]``, ``candidates`` ``[M, 1+K, D]`` (positive first) -> ``(logits, valid)``."""
    with torch.autocast(device_type=pred.device.type, enabled=False):
        logits = torch.bmm(_normalized(candidates), _normalized(pred)[:, :, None]).squeeze(2)
        same = (candidates[:, 1:] == candidates[:, :1]).all(-1)
        return _finish(logits, same, temperature)


def row_keys(x: Tensor) -> Tensor:
    """``[M]`` int64 keys of the rows of ``x`` ``[M, D]``: rows equal element by element
    (``==``, so ``-0.0`` equals ``0.0``) get equal keys. Integer sums do not depend on the
    order of the additions, so the key of a row is exact wherever it is computed."""
    D = x.shape[-1]
    bits = (x.detach().float() + 0.0).view(torch.int32).long()        # -0.0 -> +0.0
    room = max(1, 62 - 31 - max(D - 1, 1).bit_length())              # no int64 overflow
    d = torch.arange(D, device=x.device, dtype=torch.long)
    weights = (d * 2654435761 + 40503) % (1 << room) | 1
    return (bits * weights).sum(-1)


def rows_equal_at(x: Tensor, index: Tensor) -> Tensor:
    """``[M, K]`` bool: ``(x[index[i, k]] == x[i]).all()`` without building ``[M, K, D]``."""
    with torch.no_grad():
        keys = row_keys(x)
        same = keys[index] == keys[:, None]
        rows, cols = same.nonzero(as_tuple=True)
        if rows.numel():
            same[rows, cols] = (x[index[rows, cols]] == x[rows]).all(-1)
    return same


def _gathered_similarity(p: Tensor, t: Tensor, index: Tensor) -> Tensor:
    """``[M, K]``: ``p[i] . t[index[i, k]]``, one ``[c, M]`` block of dot products at a time."""
    M = t.shape[0]
    rows = max(1, BLOCK_ELEMENTS // max(M, 1))
    blocks = [(p[lo:lo + rows] @ t.T).gather(1, index[lo:lo + rows])
              for lo in range(0, p.shape[0], rows)]
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks)


def indexed_logits(pred: Tensor, targets: Tensor, negative_index: Tensor, temperature: float,
                   extra_negatives: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Equal to :func:`candidate_logits` on ``cat([targets[:, None], targets[negative_index],
    extra_negatives], 1)``.

    Args:
        pred: ``[M, D]`` predictions.
        targets: ``[M, D]`` positives; distractors are rows of it.
        negative_index: ``[M, K]`` long, rows of ``targets``.
        extra_negatives: ``[M, N, D]`` further distractors (codebook draws), or None.
    """
    index = negative_index.to(targets.device).long()
    with torch.autocast(device_type=pred.device.type, enabled=False):
        p, t = _normalized(pred), _normalized(targets)
        parts = [(p * t).sum(-1, keepdim=True), _gathered_similarity(p, t, index)]
        same = [rows_equal_at(targets, index)]
        if extra_negatives is not None:
            extra = extra_negatives.to(targets.dtype)
            parts.append(torch.bmm(_normalized(extra), p[:, :, None]).squeeze(2))
            same.append((extra == targets[:, None]).all(-1))
        logits = torch.cat(parts, dim=1)
        return _finish(logits, torch.cat(same, dim=1) if len(same) > 1 else same[0], temperature)
