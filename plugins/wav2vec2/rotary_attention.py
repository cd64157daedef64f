"""Self-attention with rotary positions (the Conformer's ``pos_enc_type: rope``).

fairseq ``RotaryPositionalEmbedding`` + ``RotaryPositionMultiHeadedAttention``,
Hugging Face ``position_embeddings_type: rotary``. As there (and unlike
RoFormer), the rotation is applied to the block's *input* ``x``, split into
``H`` heads of width ``d = D/H``, before the query and key projections; the
value projection reads the unrotated ``x``. Frame ``t``'s head vector is
rotated in the ``(c, c + d/2)`` planes by the angles ``t * base^(-2c/d)``
(the "rotate half" layout). The attention itself is plain SDPA
(:meth:`SelfAttention.attend`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .attention import SelfAttention


def rotate(x: Tensor, heads: int, base: float = 10000.0) -> Tensor:
    """``x`` ``[B, T, D]`` with each head's ``[d]`` slice of frame ``t`` rotated by position ``t``."""
    B, T, D = x.shape
    d = D // heads
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    angle = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angle = torch.cat([angle, angle], dim=-1)[:, None, :]                      # [T, 1, d]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    h = x.view(B, T, heads, d)
    first, second = h[..., :d // 2], h[..., d // 2:]
    half_turn = torch.cat([-second, first], dim=-1)
    return (h * cos + half_turn * sin).view(B, T, D)


class RotarySelfAttention(SelfAttention):
    """:class:`SelfAttention` whose queries and keys see rotated inputs (no extra parameters).

    ``forward(x [B, T, D], mask [B, 1, 1, T] bool | None, causal) -> [B, T, D]``.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, *,
                 base: float = 10000.0) -> None:
        super().__init__(dim, heads, dropout)
        self.base = base

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        B, T, D = x.shape
        H = self.heads
        w, b = self.qkv.weight, self.qkv.bias
        qk = F.linear(rotate(x, H, self.base), w[:2 * D], None if b is None else b[:2 * D])
        v = F.linear(x, w[2 * D:], None if b is None else b[2 * D:])
        q, k = qk.view(B, T, 2, H, D // H).permute(2, 0, 3, 1, 4)
        v = v.view(B, T, H, D // H).transpose(1, 2)
        y = self.attend(q, k, v, mask, causal)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))
