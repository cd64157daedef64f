"""Training-mode attention on CPU: SDPA's arithmetic with w2v.dropout on the weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from w2v import dropout as dropout_module
from w2v.plugins.wav2vec2 import attention as attention_module
from w2v.plugins.wav2vec2.attention import SelfAttention, key_padding_mask

torch.set_num_threads(1)


def layer_and_input():
    torch.manual_seed(0)
    attn = SelfAttention(32, 4, dropout=0.2)
    x = torch.randn(3, 11, 32, requires_grad=True)
    padding = torch.arange(11)[None, :] >= torch.tensor([11, 7, 3])[:, None]
    return attn, x, key_padding_mask(padding)


SCALE = 65536 / (65536 - round(0.2 * 65536))           # 1 / (1 - p) with p on the 2^-16 grid


def sdpa_reference(attn, x, mask, causal):
    """The layer computed by SDPA without dropout, its weights times the dropout's scale."""
    B, T, D = x.shape
    q, k, v = attn.qkv(x).view(B, T, 3, 4, D // 4).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal) * SCALE
    return attn.out_proj(y.transpose(1, 2).reshape(B, T, D))


def output_and_grads(forward, attn, x):
    attn.zero_grad(set_to_none=True)
    x.grad = None
    y = forward()
    y.backward(torch.ones_like(y))
    return y.detach(), x.grad.clone(), attn.qkv.weight.grad.clone()


@pytest.mark.parametrize("causal", [False, True], ids=["padding-mask", "causal"])
def test_with_nothing_dropped_it_equals_sdpa_rescaled(causal, monkeypatch):
    attn, x, mask = layer_and_input()
    mask = None if causal else mask
    expected = output_and_grads(lambda: sdpa_reference(attn, x, mask, causal), attn, x)
    monkeypatch.setattr(dropout_module, "keep_mask",
                        lambda shape, p, device: torch.ones(shape, dtype=torch.bool))
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention",
                        lambda *a, **k: pytest.fail("training on CPU must not call SDPA"))
    got = output_and_grads(lambda: attn.train()(x, mask, causal), attn, x)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_dropped_weights_are_zeroed_and_the_rest_rescaled(monkeypatch):
    attn, x, mask = layer_and_input()
    keep = torch.rand(3, 4, 11, 11, generator=torch.Generator().manual_seed(5)) >= 0.2
    monkeypatch.setattr(dropout_module, "keep_mask", lambda shape, p, device: keep)
    y = attn.train()(x, mask)
    B, T, D = x.shape
    q, k, v = attn.qkv(x).view(B, T, 3, 4, D // 4).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-2, -1)) / (D // 4) ** 0.5
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    ref = attn.out_proj(((probs * keep * SCALE) @ v).transpose(1, 2).reshape(B, T, D))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["rel_pos", "rope"])
def test_conformer_attentions_train_on_the_same_path(kind, monkeypatch):
    """Relative (additive float bias) and rotary attention: with nothing dropped, training on
    CPU equals the eval-mode layer with its weights times the dropout's scale, and SDPA is
    not called."""
    from torch import nn

    from w2v.plugins.wav2vec2.conformer import conformer_attention

    torch.manual_seed(0)
    attn = conformer_attention(32, 4, 0.2, kind)
    attn.out_proj = nn.Identity()                     # the scale passes straight through
    x = torch.randn(3, 11, 32, requires_grad=True)
    padding = torch.arange(11)[None, :] >= torch.tensor([11, 7, 3])[:, None]
    mask = key_padding_mask(padding)
    expected = output_and_grads(lambda: attn.eval()(x, mask) * SCALE, attn, x)
    monkeypatch.setattr(dropout_module, "keep_mask",
                        lambda shape, p, device: torch.ones(shape, dtype=torch.bool))
    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention",
                        lambda *a, **k: pytest.fail("training on CPU must not call SDPA"))
    got = output_and_grads(lambda: attn.train()(x, mask), attn, x)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def _qk_views(dtype=torch.float32):
    """q and k as the layer makes them: strided views of one fused projection."""
    qkv = torch.randn(2, 7, 3, 3, 4, dtype=dtype, generator=torch.Generator().manual_seed(3))
    qkv.requires_grad_()
    q, k, _ = qkv.permute(2, 0, 3, 1, 4)                                  # [B, H, T, d]
    return qkv, q, k


def test_scaled_scores_gradients_are_exact_in_float64():
    _, q, k = _qk_views(torch.float64)
    assert torch.autograd.gradcheck(lambda q, k: attention_module._ScaledScores.apply(q, k, 0.5),
                                    (q, k))


def test_scaled_scores_equal_the_product_and_keep_only_the_projection():
    qkv, q, k = _qk_views()
    storages = []

    def pack(t):
        storages.append(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ours = attention_module._ScaledScores.apply(q, k, 0.5)
    assert set(storages) == {qkv.untyped_storage().data_ptr()}        # no copy kept
    grad = torch.randn(ours.shape)
    ours.backward(grad)
    got = ours.detach(), qkv.grad.clone()
    qkv.grad = None
    ref = (q * 0.5) @ k.transpose(-2, -1)
    ref.backward(grad)
    for a, b in zip(got, (ref.detach(), qkv.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_scaled_scores_under_bf16_autocast_match_the_autocast_product():
    qkv, q, k = _qk_views()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = attention_module._ScaledScores.apply(q, k, 0.5)
        ref = (q * 0.5) @ k.transpose(-2, -1)
    assert ours.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2e-2, atol=2e-2)
    ours.float().sum().backward()
    assert qkv.grad.dtype == torch.float32 and torch.isfinite(qkv.grad).all()
