"""The wav2vec-U discriminator: a causal conv stack scoring phone sequences (fairseq
``Discriminator``).

``[B, T, V]`` phone distributions (the generator's softmax, or one-hot real text)
-> Conv1d(V, D, k) -> dropout -> (depth - 1) x [Conv1d(D, D, k), dropout, GELU]
-> Conv1d(D, 1, k) -> per-frame scores, averaged over valid frames -> ``[B]``
logits ("this is generated"). Causal convolutions see only the past.
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from w2v.config import field, real, size
from w2v.interfaces import lengths_to_padding_mask


@attrs.define(kw_only=True)
class DiscriminatorConfig:
    dim: int = size(384, 1, 1 << 14, "channels of the conv stack")
    depth: int = size(2, 1, 32, "convolutions before the scoring one")
    kernel: int = size(6, 1, 64, "convolution kernel")
    dilation: int = size(1, 1, 16, "dilation of the inner convolutions")
    causal: bool = field(True, "causal convolutions (each score sees only the past)")
    linear_emb: bool = field(False, "a 1x1 first convolution instead of a kernel-wide one")
    max_pool: bool = field(False, "max over frames instead of the mean")
    dropout: float = real(0.0, 0.0, 1.0, "dropout after the embedding and inner convolutions")
    weight_norm: bool = field(False, "weight normalisation on every convolution")
    spectral_norm: bool = field(False, "spectral normalisation on every convolution")


class _Conv(nn.Module):
    """Conv1d that keeps the length: causal (left context) or centred."""

    def __init__(self, cfg: DiscriminatorConfig, c_in: int, c_out: int, kernel: int,
                 dilation: int) -> None:
        super().__init__()
        reach = dilation * (kernel - 1)
        self.trim = reach if cfg.causal else (1 if kernel % 2 == 0 else 0)
        pad = reach if cfg.causal else dilation * (kernel // 2)
        conv = nn.Conv1d(c_in, c_out, kernel, padding=pad, dilation=dilation)
        if cfg.spectral_norm:
            conv = nn.utils.parametrizations.spectral_norm(conv)
        elif cfg.weight_norm:
            conv = nn.utils.parametrizations.weight_norm(conv)
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x[..., :-self.trim] if self.trim else x


class Discriminator(nn.Module):
    """Phone distributions ``[B, T, V]`` (``lengths`` ``[B]`` or None) -> logits ``[B]``."""

    def __init__(self, config: DiscriminatorConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = cfg = config
        emb_kernel = 1 if cfg.linear_emb else cfg.kernel
        layers: list[nn.Module] = [_Conv(cfg, vocab_size, cfg.dim, emb_kernel, cfg.dilation),
                                   nn.Dropout(cfg.dropout)]
        for _ in range(cfg.depth - 1):
            layers += [_Conv(cfg, cfg.dim, cfg.dim, cfg.kernel, cfg.dilation),
                       nn.Dropout(cfg.dropout), nn.GELU()]
        layers.append(_Conv(cfg, cfg.dim, 1, cfg.kernel, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        scores = self.net(x.transpose(1, 2)).squeeze(1)        # [B, T]
        if lengths is None:
            return scores.amax(-1) if self.config.max_pool else scores.mean(-1)
        pad = lengths_to_padding_mask(lengths, scores.shape[1])
        if self.config.max_pool:
            return scores.masked_fill(pad, float("-inf")).amax(-1)
        return scores.masked_fill(pad, 0.0).sum(-1) / lengths.clamp(min=1).to(scores.dtype)
