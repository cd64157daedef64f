"""A Conformer block for the wav2vec 2.0 context network (fairseq ``ConformerWav2Vec2EncoderLayer``).

``x + FFN/2 -> x + MHSA -> x + conv module -> LayerNorm(x + FFN/2)``, with
Swish (SiLU) activations and fairseq's parameter names (``ffn1``, ``self_attn``,
``self_attn_layer_norm``, ``conv_module``, ``ffn2``, ``final_layer_norm``).

Positions (``pos_enc_type``): ``abs`` leaves them to the context network's
positional conv (fairseq runs these blocks inside its ``TransformerEncoder``);
``rel_pos`` uses Transformer-XL relative attention
(:mod:`.relative_attention`) and ``rope`` rotary attention
(:mod:`.rotary_attention`), as fairseq's ``ConformerEncoder`` does.

Padding: by default padded frames are zeroed before the depthwise conv, so a
padded batch gives each utterance the features it gets alone. fairseq and
Hugging Face let whatever the block computed at padded frames into the
depthwise conv, where it reaches the last ``(K-1)/2`` valid frames;
``fairseq_compat`` keeps that.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from w2v.dropout import Dropout

from .attention import SelfAttention
from .relative_attention import RelPositionSelfAttention
from .rotary_attention import RotarySelfAttention

POS_ENC_TYPES = ("abs", "rel_pos", "rope")


def conformer_attention(dim: int, heads: int, dropout: float, pos_enc_type: str = "abs", *,
                        rotary_base: float = 10000.0) -> SelfAttention:
    """The self-attention of a block with ``pos_enc_type`` positions."""
    if pos_enc_type == "rel_pos":
        return RelPositionSelfAttention(dim, heads, dropout)
    if pos_enc_type == "rope":
        return RotarySelfAttention(dim, heads, dropout, base=rotary_base)
    if pos_enc_type != "abs":
        raise ValueError(f"expected pos_enc_type in {POS_ENC_TYPES}, found {pos_enc_type!r}")
    return SelfAttention(dim, heads, dropout)


class ConformerFeedForward(nn.Module):
    """``LayerNorm -> Linear(D, F) -> SiLU -> dropout -> Linear(F, D) -> dropout``, ``[B, T, D]``."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.w_1 = nn.Linear(dim, ffn_dim)
        self.w_2 = nn.Linear(ffn_dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.w_2(self.dropout(F.silu(self.w_1(self.layer_norm(x))))))


class ConformerConvModule(nn.Module):
    """``LayerNorm -> pointwise conv (2D) -> GLU -> depthwise conv (K) -> BatchNorm -> SiLU ->
    pointwise conv -> dropout``, ``[B, T, D] -> [B, T, D]``.

    Padded frames (``padding`` ``[B, T]``, True = padded) are zeroed before the
    depthwise conv so they never leak into valid ones, unless ``padding`` is None
    (fairseq compatibility passes None); ``causal`` pads the depthwise conv on the
    left only.
    """

    def __init__(self, dim: int, kernel: int, dropout: float, *, causal: bool = False) -> None:
        super().__init__()
        self.kernel, self.causal = kernel, causal
        self.layer_norm = nn.LayerNorm(dim)
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1, bias=False)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, groups=dim, bias=False)
        self.batch_norm = nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1, bias=False)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, padding: Tensor | None = None) -> Tensor:
        y = F.glu(self.pointwise_conv1(self.layer_norm(x).transpose(1, 2)), dim=1)
        if padding is not None:
            y = y.masked_fill(padding[:, None, :], 0.0)
        left = self.kernel - 1 if self.causal else (self.kernel - 1) // 2
        y = self.depthwise_conv(F.pad(y, (left, self.kernel - 1 - left)))
        y = self.pointwise_conv2(F.silu(self.batch_norm(y)))
        return self.dropout(y).transpose(1, 2)


class ConformerLayer(nn.Module):
    """One Conformer block, ``forward(x [B, T, D], mask, causal, padding) -> [B, T, D]``.

    ``fairseq_compat``: padded frames reach the depthwise conv (see the module docstring).
    """

    def __init__(self, dim: int, ffn_dim: int, heads: int, *, dropout: float,
                 attention_dropout: float, kernel: int, causal: bool, pos_enc_type: str,
                 rotary_base: float, fairseq_compat: bool) -> None:
        super().__init__()
        self.fairseq_compat = fairseq_compat
        self.ffn1 = ConformerFeedForward(dim, ffn_dim, dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.self_attn = conformer_attention(dim, heads, attention_dropout, pos_enc_type,
                                             rotary_base=rotary_base)
        self.dropout = Dropout(dropout)
        self.conv_module = ConformerConvModule(dim, kernel, dropout, causal=causal)
        self.ffn2 = ConformerFeedForward(dim, ffn_dim, dropout)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False,
                padding: Tensor | None = None) -> Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), mask, causal))
        x = x + self.conv_module(x, None if self.fairseq_compat else padding)
        return self.final_layer_norm(x + 0.5 * self.ffn2(x))
