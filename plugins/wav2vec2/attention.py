"""Multi-head self-attention over ``[B, T, D]`` with PyTorch's fused SDPA kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.dropout import dropout_matmul


def _batched(t: Tensor) -> Tensor:
    """``[B, H, T, d]`` -> ``[B * H, T, d]``: a view where the strides allow, else a copy."""
    return t.reshape(-1, *t.shape[-2:])


def _scaled_product(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """``scale * a @ b`` of ``[N, n, m]`` and ``[N, m, k]``, the scale inside the product
    (``baddbmm``'s ``alpha``; its ignored first term is made in the dtype that the product
    runs in, under CPU autocast too, so that autocast does not cast it)."""
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") \
        else torch.promote_types(a.dtype, b.dtype)
    out = torch.empty(a.shape[0], a.shape[1], b.shape[2], dtype=dtype, device=a.device)
    return torch.baddbmm(out, a, b, beta=0, alpha=scale)


class _ScaledScores(torch.autograd.Function):
    """``scale * q @ kᵀ`` ``[B, H, T, T]`` of ``q``, ``k`` ``[B, H, T, d]``. It keeps ``q``
    and ``k`` as given: views of the layer's fused projection, which the layer keeps for
    ``v`` anyway. A plain product would keep the contiguous copies it makes of them (and of
    ``q * scale``): 2 x ``[B, H, T, d]`` per layer; backward makes them again."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, q: Tensor, k: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(q, k)
        ctx.scale = scale
        scores = _scaled_product(_batched(q), _batched(k).mT, scale)
        return scores.view(*q.shape[:-1], k.shape[-2])

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad: Tensor):
        q, k = ctx.saved_tensors
        g = _batched(grad)
        grad_q = _scaled_product(g, _batched(k), ctx.scale).view(q.shape) \
            if ctx.needs_input_grad[0] else None
        grad_k = _scaled_product(g.mT, _batched(q), ctx.scale).view(k.shape) \
            if ctx.needs_input_grad[1] else None
        return grad_q, grad_k, None


def attention_with_dropout(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool,
                           p: float) -> Tensor:
    """SDPA's arithmetic with :func:`w2v.dropout.dropout` on the attention weights, through
    :func:`w2v.dropout.dropout_matmul` (the dropped weights are not kept for backward).

    ``q``, ``k``, ``v`` ``[B, H, T, d]``, ``mask`` bool (True = attend) or an additive float
    bias, broadcast to ``[B, H, T, T]`` -> ``[B, H, T, d]``. On CPU, SDPA trains with
    dropout on its unfused path, which draws a Bernoulli sample per weight; this computes
    the same scores and softmax with the cheaper mask (the weights' dropout is most of that
    path's random-number time).
    """
    scores = _ScaledScores.apply(q, k, q.shape[-1] ** -0.5)                 # [B, H, T, T]
    if causal:
        T = scores.shape[-1]
        future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu_(1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool \
            else scores + mask
    return dropout_matmul(scores.softmax(-1), v, p)


def key_padding_mask(padding: Tensor | None) -> Tensor | None:
    """``[B, T]`` bool (True = padded) -> SDPA mask ``[B, 1, 1, T]`` (True = attend), or None."""
    return None if padding is None else (~padding)[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused input projection.

    ``qkv`` is ``Linear(D, 3D)`` whose rows are the query, key and value
    projections in that order (fairseq/HF ``q_proj``, ``k_proj``, ``v_proj``
    stacked); ``out_proj`` is ``Linear(D, D)``. Scores are scaled by
    ``head_dim ** -0.5``.

    ``forward(x [B, T, D], mask [B, 1, 1, T] bool | None, causal) -> [B, T, D]``: the
    boolean key-padding mask keeps SDPA on a fused kernel (no ``[B, T, T]``
    float bias); with ``causal`` the mask is not needed for valid queries of
    right-padded sequences and must be None. Training on CPU with attention dropout runs
    :func:`attention_with_dropout` instead, SDPA's unfused arithmetic with a cheaper mask
    (:meth:`attend`, which the relative and rotary variants share).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = self.attend(q, k, v, mask, causal)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
               causal: bool = False) -> Tensor:
        """Attention of ``q``, ``k``, ``v`` ``[B, H, T, d]`` with this layer's dropout: SDPA,
        or :func:`attention_with_dropout` when training with dropout on CPU. ``mask`` as
        SDPA's ``attn_mask`` (bool or additive float)."""
        if self.training and self.dropout > 0 and q.device.type == "cpu":
            return attention_with_dropout(q, k, v, mask, causal, self.dropout)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                              dropout_p=self.dropout if self.training else 0.0)
