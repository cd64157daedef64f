"""Phone-normalised mutual information of discrete units (HuBERT's PNMI).

``PNMI = I(phone; unit) / H(phone)`` from the joint counts of paired frame labels: 1 when
the phone of every frame can be read off its unit, 0 when units and phones are independent.
The estimate is biased upwards on a finite sample (more units, more bias), so
:func:`shuffled_pnmi` gives the same units permuted over the frames: the chance level of
that unit histogram.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def pnmi(units: Tensor, phones: Tensor) -> float:
    """PNMI of ``units`` ``[N]`` and ``phones`` ``[N]`` (any integer ids, paired by frame)."""
    if units.shape != phones.shape or units.ndim != 1:
        raise ValueError(f"expected two [N] label tensors, found {list(units.shape)} and "
                         f"{list(phones.shape)}")
    u = torch.unique(units, return_inverse=True)[1]
    p = torch.unique(phones, return_inverse=True)[1]
    nu, nphones = int(u.max()) + 1 if len(u) else 0, int(p.max()) + 1 if len(p) else 0
    if nphones < 2:
        return 0.0  # one phone has no entropy to explain
    joint = torch.bincount(u * nphones + p, minlength=nu * nphones).reshape(nu, nphones)
    joint = joint.double() / joint.sum()
    pu, pp = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
    nz = joint > 0
    mi = (joint[nz] * (joint[nz] / (pu * pp)[nz]).log()).sum()
    h = -(pp[pp > 0] * pp[pp > 0].log()).sum()
    return float(mi / h)


def shuffled_pnmi(units: Tensor, phones: Tensor, *, repeats: int = 3, seed: int = 0) -> float:
    """Mean PNMI of ``units`` randomly permuted over the frames (the finite-sample floor)."""
    g = torch.Generator().manual_seed(seed)
    return float(np.mean([pnmi(units[torch.randperm(len(units), generator=g)], phones)
                          for _ in range(repeats)]))


def frame_phones(alignments: list, counts: np.ndarray, *, stride: int, centre: int
                 ) -> tuple[Tensor, list[str]]:
    """Phone ids ``[sum(counts)]`` of every frame (the phone at its centre, ``centre + stride
    * t`` samples) from per-utterance alignments, and the phone names."""
    from w2v.plugins.demo.alignment import frame_labels

    labels: list[str] = []
    for segments, n in zip(alignments, counts.tolist()):
        labels += frame_labels(segments, n, hop=stride, offset=centre)
    names = sorted(set(labels))
    index = {p: i for i, p in enumerate(names)}
    return torch.tensor([index[p] for p in labels], dtype=torch.long), names
