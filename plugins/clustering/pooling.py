"""Segment pooling of one utterance's frames (wav2vec-U audio preparation).

* :func:`merge_runs`: average each run of consecutive frames with the same
  cluster id (fairseq ``merge_clusters.py --pooling mean``);
* :func:`mean_pool_pairs`: average adjacent frames (``mean_pool.py
  --subsample-rate 0.5``; an odd last frame is averaged with itself).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def merge_runs(x: Tensor, ids: Tensor) -> Tensor:
    """``x`` ``[T, D]`` with cluster ``ids`` ``[T]`` -> ``[R, D]``, one mean per run."""
    if len(x) == 0:
        return x
    _, inverse, counts = torch.unique_consecutive(ids, return_inverse=True, return_counts=True)
    sums = x.new_zeros(len(counts), x.shape[1]).index_add_(0, inverse, x)
    return sums / counts[:, None].to(x.dtype)


def mean_pool_pairs(x: Tensor, rate: float = 0.5) -> Tensor:
    """``x`` ``[T, D]`` -> ``[ceil(T * rate), D]``: equal consecutive groups averaged, the
    last group filled up by repeating the last frame (fairseq ``mean_pool.py``)."""
    if rate >= 1.0 or len(x) == 0:
        return x
    target = math.ceil(len(x) * rate)
    missing = (-len(x)) % target
    if missing:
        x = torch.cat([x, x[-1:].expand(missing, -1)])
    return x.view(target, -1, x.shape[1]).mean(1)
