"""Self-attention with Transformer-XL relative positions (the Conformer's ``pos_enc_type: rel_pos``).

fairseq ``RelPositionalEncoding`` + ``RelPositionMultiHeadedAttention`` (ESPnet),
Hugging Face ``position_embeddings_type: relative``. With ``q, k, v`` the usual
projections, ``p_r`` the sinusoid of relative distance ``r`` and ``d`` the head
width, the score of query ``i`` for key ``j`` is

    ((q_i + u) . k_j  +  (q_i + v) . W_pos p_{i-j}) / sqrt(d)

with learned per-head biases ``u`` (``pos_bias_u``) and ``v`` (``pos_bias_v``).
The first term is ordinary attention on ``q + u``; the second does not depend
on the key's content, so it is computed here and handed to the attention
(:meth:`SelfAttention.attend`: SDPA) as an additive float mask (the key-padding
mask folded in as ``-inf``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .attention import SelfAttention


def relative_sinusoids(length: int, dim: int, *, device=None, dtype=None) -> Tensor:
    """``[2T-1, D]`` sinusoids of the distances ``T-1, T-2, ..., -(T-1)`` (row ``k`` is distance
    ``T-1-k``); even channels ``sin(r w_m)``, odd channels ``cos(r w_m)``,
    ``w_m = 10000^(-2m/D)`` (fairseq's table, computed in float32)."""
    distance = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                     * (-math.log(10000.0) / dim))
    angle = distance[:, None] * freq[None, :]
    table = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)[:, :dim]
    return table.to(dtype or torch.float32)


def distance_to_key(scores: Tensor) -> Tensor:
    """``[..., T, 2T-1]`` scores indexed by distance row (see :func:`relative_sinusoids`) ->
    ``[..., T, T]`` indexed by key: ``out[i, j] = scores[i, T-1-i+j]`` (distance ``i-j``).

    In the flattened ``[T * (2T-1)]`` layout that element sits at ``T-1 + i(2T-2) + j``, so
    the result is a strided view of one slice (no gather, no copy for contiguous input).
    """
    T = scores.shape[-2]
    if T == 1:
        return scores
    flat = scores.flatten(-2)[..., T - 1:T - 1 + T * (2 * T - 2)]
    return flat.unflatten(-1, (T, 2 * T - 2))[..., :T]


class RelPositionSelfAttention(SelfAttention):
    """:class:`SelfAttention` plus ``linear_pos`` (``Linear(D, D)``, no bias) and the biases
    ``pos_bias_u`` / ``pos_bias_v`` ``[H, D/H]`` (fairseq / Hugging Face names).

    ``forward(x [B, T, D], mask [B, 1, 1, T] bool | None, causal) -> [B, T, D]``.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__(dim, heads, dropout)
        head_dim = dim // heads
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, head_dim))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def position_bias(self, q: Tensor) -> Tensor:
        """``(q + v) . W_pos p_{i-j} / sqrt(d)``: ``[B, H, T, T]`` from ``q`` ``[B, H, T, d]``."""
        B, H, T, d = q.shape
        table = relative_sinusoids(T, H * d, device=q.device, dtype=q.dtype)
        pos = self.linear_pos(table).view(2 * T - 1, H, d).transpose(0, 1)    # [H, 2T-1, d]
        by_distance = (q + self.pos_bias_v[:, None, :]) @ pos.transpose(-1, -2)
        return distance_to_key(by_distance) / math.sqrt(d)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.position_bias(q)
        if mask is not None:
            bias = bias.masked_fill(~mask, float("-inf"))
        if causal:
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            bias = bias.masked_fill(future, float("-inf"))
        y = self.attend(q + self.pos_bias_u[:, None, :], k, v, bias)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))
