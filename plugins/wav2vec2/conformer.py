"""A Conformer block for the wav2vec 2.0 context network (fairseq ``ConformerWav2Vec2EncoderLayer``).

``x + FFN/2 -> x + MHSA -> x + conv module -> LayerNorm(x + FFN/2)``, with
Swish (SiLU) activations, absolute positions from the shared positional
conv, and fairseq's parameter names (``ffn1``, ``self_attn``,
``self_attn_layer_norm``, ``conv_module``, ``ffn2``, ``final_layer_norm``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .attention import SelfAttention


class ConformerFeedForward(nn.Module):
    """``LayerNorm -> Linear(D, F) -> SiLU -> dropout -> Linear(F, D) -> dropout``, ``[B, T, D]``."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.w_1 = nn.Linear(dim, ffn_dim)
        self.w_2 = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.w_2(self.dropout(F.silu(self.w_1(self.layer_norm(x))))))


class ConformerConvModule(nn.Module):
    """``LayerNorm -> pointwise conv (2D) -> GLU -> depthwise conv (K) -> BatchNorm -> SiLU ->
    pointwise conv -> dropout``, ``[B, T, D] -> [B, T, D]``.

    Padded frames are zeroed before the depthwise conv so they never leak into
    valid ones; ``causal`` pads the depthwise conv on the left only.
    """

    def __init__(self, dim: int, kernel: int, dropout: float, *, causal: bool = False) -> None:
        super().__init__()
        self.kernel, self.causal = kernel, causal
        self.layer_norm = nn.LayerNorm(dim)
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, groups=dim, bias=False)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        y = F.glu(self.pointwise_conv1(self.layer_norm(x).transpose(1, 2)), dim=1)
        if padding is not None:
            y = y.masked_fill(padding[:, None, :], 0.0)
        left = self.kernel - 1 if self.causal else (self.kernel - 1) // 2
        y = self.depthwise_conv(F.pad(y, (left, self.kernel - 1 - left)))
        y = self.pointwise_conv2(F.silu(self.batch_norm(y)))
        return self.dropout(y).transpose(1, 2)


class ConformerLayer(nn.Module):
    """One Conformer block, ``forward(x [B, T, D], mask, causal, padding) -> [B, T, D]``."""

    def __init__(self, dim: int, ffn_dim: int, heads: int, *, dropout: float = 0.1,
                 attention_dropout: float = 0.0, kernel: int = 31, causal: bool = False) -> None:
        super().__init__()
        self.ffn1 = ConformerFeedForward(dim, ffn_dim, dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, heads, attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.conv_module = ConformerConvModule(dim, kernel, dropout, causal=causal)
        self.ffn2 = ConformerFeedForward(dim, ffn_dim, dropout)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False,
                padding: Tensor | None = None) -> Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), mask, causal))
        x = x + self.conv_module(x, padding)
        return self.final_layer_norm(x + 0.5 * self.ffn2(x))
