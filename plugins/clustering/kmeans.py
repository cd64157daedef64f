"""Seeded k-means over feature frames: faiss (CPU) when installed, torch otherwise.

The torch path is k-means++ initialisation followed by Lloyd iterations, all in
batched matrix products (chunked so ``[N, K]`` distances never exceed memory).
Both paths are deterministic for a seed; they need not agree with each other.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor


@attrs.define
class KMeans:
    """Fitted centroids ``[K, D]``; :meth:`assign` maps frames ``[N, D]`` to ids ``[N]``."""

    centroids: Tensor

    def assign(self, x: Tensor, chunk: int = 65536) -> Tensor:
        c = self.centroids.to(x.device, torch.float32)
        cc = (c * c).sum(1)
        out = [(cc[None] - 2 * xs.float() @ c.T).argmin(1) for xs in x.split(chunk)]
        return torch.cat(out) if out else x.new_zeros(0, dtype=torch.long)

    def inertia(self, x: Tensor) -> float:
        """Mean squared distance of frames to their centroid."""
        return float(((x.float() - self.centroids[self.assign(x)]) ** 2).sum(1).mean())


def _faiss():
    try:
        import faiss  # type: ignore
    except ImportError:
        return None
    return faiss


def fit_kmeans(x: Tensor, k: int, *, iterations: int = 50, seed: int = 0,
               backend: str = "auto") -> KMeans:
    """Fit ``k`` centroids on frames ``x`` ``[N, D]`` (``backend``: auto, faiss or torch)."""
    x = x.float()
    if len(x) < k:
        from w2v.errors import DataError

        raise DataError(f"k-means with {k} clusters needs at least {k} frames, found {len(x)}.",
                        hint="Use fewer clusters or featurize more audio.")
    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        from w2v.errors import ConfigError

        raise ConfigError("k-means backend `faiss` asked for, but faiss is not installed.",
                          hint="pip install faiss-cpu, or use backend `torch`.")
    if faiss is not None:
        km = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, verbose=False)
        km.train(x.numpy())
        return KMeans(torch.from_numpy(km.centroids).clone())
    return KMeans(_lloyd(x, k, iterations, seed))


def _lloyd(x: Tensor, k: int, iterations: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(len(x), (1,), generator=g)
    centroids = x[first]
    dist = ((x - centroids) ** 2).sum(1)
    picks = [int(first)]
    for _ in range(1, k):
        weights = dist / dist.sum() if dist.sum() > 0 else torch.ones_like(dist) / len(dist)
        pick = int(torch.multinomial(weights, 1, generator=g))
        picks.append(pick)
        dist = torch.minimum(dist, ((x - x[pick]) ** 2).sum(1))
    c = x[picks].clone()
    for _ in range(iterations):
        assign = KMeans(c).assign(x)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        moved = counts > 0
        new = c.clone()
        new[moved] = sums[moved] / counts[moved, None]
        if torch.equal(new, c):
            break
        c = new
    return c
