"""JOIN segmentation of generator outputs (wav2vec-U, fairseq ``JoinSegmenter``).

Consecutive frames whose most likely phone is the same form one segment. In
training one frame of each segment is kept, picked uniformly at random (so the
gradient reaches one frame per segment); in evaluation the segment's logits are
averaged. Vectorised over the batch: no per-utterance Python loop.
"""

from __future__ import annotations

import torch
from torch import Tensor


def segment_runs(preds: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Runs of equal ``preds`` ``[B, T]`` within ``lengths`` ``[B]``.

    Returns ``run_id`` ``[B, T]`` (the segment index of each frame; padded frames get
    the out-of-range index ``T``), ``counts`` ``[B, T]`` (frames per segment, 0 past
    the last) and ``starts`` ``[B, T]`` (first frame of each segment).
    """
    b, t = preds.shape
    steps = torch.arange(t, device=preds.device)
    valid = steps[None] < lengths[:, None]
    new_run = torch.ones_like(valid)
    new_run[:, 1:] = preds[:, 1:] != preds[:, :-1]
    new_run &= valid
    run_id = torch.where(valid, new_run.long().cumsum(1) - 1, torch.full_like(preds, t))
    counts = torch.zeros(b, t + 1, dtype=torch.long, device=preds.device)
    counts.scatter_add_(1, run_id, valid.long())
    starts = torch.zeros(b, t + 1, dtype=torch.long, device=preds.device)
    starts.scatter_(1, torch.where(new_run, run_id, torch.full_like(run_id, t)),
                    steps.expand(b, t).contiguous())
    return run_id, counts[:, :t], starts[:, :t]


def join_segments(logits: Tensor, lengths: Tensor, *, random_frame: bool,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Merge runs of equal argmax in ``logits`` ``[B, T, V]`` (``lengths`` ``[B]``).

    ``random_frame``: keep one uniformly drawn frame per segment (fairseq's training
    behaviour); otherwise average the segment's logits (evaluation). Returns
    ``[B, S, V]`` (S = most segments in the batch; padded segments are zeros) and
    ``[B]`` segment counts.
    """
    b, t, v = logits.shape
    if t == 0:
        return logits, lengths
    run_id, counts, starts = segment_runs(logits.argmax(-1), lengths)
    num = (counts > 0).sum(1)
    s = max(int(num.max()), 1)
    counts, starts = counts[:, :s], starts[:, :s]
    present = counts > 0
    if random_frame:
        draw = torch.rand(b, s, device=logits.device, generator=generator)
        pick = starts + (draw * counts).long().clamp(max=(counts - 1).clamp(min=0))
        out = logits.gather(1, pick[..., None].expand(b, s, v))
    else:
        sums = logits.new_zeros(b, t + 1, v).scatter_add_(1, run_id[..., None].expand(b, t, v),
                                                          logits)
        out = sums[:, :s] / counts.clamp(min=1)[..., None].to(logits.dtype)
    return out * present[..., None].to(out.dtype), num
