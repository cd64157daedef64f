"""K-means product quantizer (vq-wav2vec).

Frames are projected by a grouped 1x1 convolution (no bias) and a
``GroupNorm(G)``, split into ``G`` groups, and each group is replaced by its
nearest codebook entry (L2). Gradients pass straight through to the
projection; the codebook learns from the k-means loss
``mse(zq, sg(ze)) + gamma * mse(ze, sg(zq))``, returned as ``aux_loss``.

Parameter names follow fairseq: ``projection.0`` (conv), ``projection.1``
(group norm), ``embedding`` ``[V, G (1 if combine_groups), C/G]``.

Note: the group norm takes statistics over channels *and time* of each
utterance (as fairseq does), so an output frame depends on the whole
utterance, padding included; batches for training are normally crop-equalised.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import field, real, size
from w2v.errors import ConfigError
from w2v.interfaces import (Quantizer, QuantizerOutput, Signal, lengths_to_padding_mask,
                            upstream_dim)

from .gumbel import code_frequencies, perplexity


@attrs.define(kw_only=True)
class KMeansQuantizerConfig:
    groups: int = size(2, 1, 64, "codebook groups G; the width must be divisible by G")
    num_vars: int = size(320, 2, 1 << 16, "entries V per group")
    combine_groups: bool = field(False, "share one codebook of V entries across all groups")
    gamma: float = real(0.25, 0.0, None, "commitment weight: mse(zq, sg(ze)) + gamma * mse(ze, sg(zq))")


class Fp32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in fp32 whatever the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).type_as(x)


class KMeansQuantizer(Quantizer):
    """Nearest-codeword product quantizer with a commitment loss.

    ``forward(x [B, T, C], lengths) -> QuantizerOutput`` with ``vectors``
    ``[B, T, C]`` (the chosen entries, straight-through to the projection),
    ``codes`` ``[B, T, G]``, ``aux_loss`` (the k-means loss over valid frames)
    and stats ``code_perplexity`` and ``kmeans_loss``.
    """

    Config = KMeansQuantizerConfig

    def __init__(self, config: KMeansQuantizerConfig, input_dim: int,
                 upstream: Signal | None = None) -> None:
        super().__init__()
        groups, num_vars = config.groups, config.num_vars
        if input_dim % groups:
            raise ConfigError(f"the upstream width ({input_dim}) must be divisible by groups "
                              f"({groups}).", key="groups")
        self.input_dim = input_dim
        self.dim = input_dim
        self.groups = groups
        self.num_vars = num_vars
        self.combine_groups = config.combine_groups
        self.gamma = config.gamma
        self.var_dim = input_dim // groups
        self._upstream = upstream
        self.embedding = nn.Parameter(
            0.01 * torch.randn(num_vars, 1 if config.combine_groups else groups, self.var_dim))
        self.projection = nn.Sequential(
            nn.Conv1d(input_dim, input_dim, kernel_size=1, groups=groups, bias=False),
            Fp32GroupNorm(groups, input_dim),
        )

    @classmethod
    def from_config(cls, config: KMeansQuantizerConfig, upstream: Signal | None = None,
                    **context) -> "KMeansQuantizer":
        return cls(config, upstream_dim(upstream, "k-means quantizer"), upstream)

    def health_checks(self) -> list:
        """Codebook collapse, watched by the trainer (see :mod:`.health`)."""
        from .health import CodebookCollapse
        return [CodebookCollapse(self.groups, self.groups * self.num_vars)]

    def produces(self) -> Signal:
        if self._upstream is None:
            return Signal(kind="frames", dim=self.dim, causal=True)
        return self._upstream.then(kind="frames", dim=self.dim)

    def codebook(self) -> Tensor:
        """``[G, V, C/G]`` entries of each group."""
        return self.embedding.expand(-1, self.groups, -1).transpose(0, 1)

    def lookup(self, codes: Tensor) -> Tensor:
        """Code vectors ``[..., C]`` of ``codes`` ``[..., G]``."""
        group = torch.arange(self.groups, device=codes.device)
        return self.codebook()[group, codes].flatten(-2)

    def sample_from_codebook(self, n: int) -> Tensor:
        """``[n, C]`` code vectors with uniformly random entries."""
        codes = torch.randint(0, self.num_vars, (n, self.groups), device=self.embedding.device)
        return self.lookup(codes)

    def project(self, x: Tensor) -> Tensor:
        """``[B, T, C]`` -> ``ze`` ``[B, T, C]`` (grouped 1x1 conv, then group norm)."""
        return self.projection(x.transpose(1, 2)).transpose(1, 2)

    def nearest(self, ze: Tensor) -> Tensor:
        """Nearest entry per group: ``ze`` ``[..., C]`` -> codes ``[..., G]``."""
        z = ze.detach().float().reshape(-1, self.groups, self.var_dim).transpose(0, 1)  # [G, N, d]
        book = self.codebook().detach().float()                                       # [G, V, d]
        dist = (z.pow(2).sum(-1, keepdim=True) - 2 * torch.bmm(z, book.transpose(1, 2))
                + book.pow(2).sum(-1)[:, None, :])                                   # [G, N, V]
        return dist.argmin(-1).transpose(0, 1).reshape(*ze.shape[:-1], self.groups)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> QuantizerOutput:
        B, T, C = x.shape
        ze = self.project(x)
        codes = self.nearest(ze)                                   # [B, T, G]
        zq = self.lookup(codes).to(ze.dtype)                       # [B, T, C], grads to codebook
        vectors = zq.detach() + (ze - ze.detach())                 # value zq, gradient to ze

        pad = lengths_to_padding_mask(lengths, T)
        zq32, ze32 = zq.float(), ze.float()
        if pad is None:
            loss = F.mse_loss(zq32, ze32.detach()) + self.gamma * F.mse_loss(ze32, zq32.detach())
            valid = None
        else:
            valid = ~pad
            n = valid.sum().clamp(min=1) * C
            w = valid[..., None].to(ze32.dtype)
            latent = ((zq32 - ze32.detach()).pow(2) * w).sum() / n
            commit = ((ze32 - zq32.detach()).pow(2) * w).sum() / n
            loss = latent + self.gamma * commit
        with torch.no_grad():
            flat_valid = None if valid is None else valid.reshape(-1)
            code_ppl = perplexity(code_frequencies(codes.reshape(-1, self.groups), self.num_vars,
                                                   flat_valid))
        return QuantizerOutput(vectors=vectors, codes=codes, aux_loss=loss,
                               stats={"code_perplexity": code_ppl, "kmeans_loss": loss.detach()})
