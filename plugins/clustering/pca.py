"""PCA over feature frames (fairseq ``pca.py`` / ``apply_pca.py``).

``y = (x - mean) @ A`` with ``A`` ``[D, d]`` the top-``d`` principal directions; with
``whiten`` each direction is scaled by ``eigenvalue ** -0.5`` (fairseq's
``--eigen-power -0.5``), so the outputs have unit variance.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor


@attrs.define
class PCA:
    """A fitted projection: ``mean`` ``[D]``, ``matrix`` ``[D, d]``;
    ``apply(x [N, D]) -> [N, d]``."""

    mean: Tensor
    matrix: Tensor

    def apply(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) @ self.matrix


def fit_pca(x: Tensor, dim: int, *, whiten: bool = False) -> PCA:
    """Fit on frames ``x`` ``[N, D]``; ``dim`` is capped at ``D``. Deterministic: each
    direction's sign is fixed so its largest component is positive."""
    x = x.double()
    dim = min(dim, x.shape[1])
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)
    values, vectors = torch.linalg.eigh(cov)
    order = values.argsort(descending=True)[:dim]
    values, vectors = values[order], vectors[:, order]
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))
    vectors = vectors * signs
    if whiten:
        vectors = vectors * values.clamp(min=1e-8).rsqrt()
    return PCA(mean=mean.float(), matrix=vectors.float())
