"""Relative (Transformer-XL) and rotary attention of the Conformer, against their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from w2v.plugins.wav2vec2.relative_attention import (RelPositionSelfAttention, distance_to_key,
                                                     relative_sinusoids)
from w2v.plugins.wav2vec2.rotary_attention import RotarySelfAttention, rotate
from w2v.plugins.wav2vec2.transformer import TransformerAggregator, TransformerAggregatorConfig

torch.set_num_threads(1)


@pytest.mark.parametrize("T", [1, 2, 5, 8])
def test_distance_to_key_picks_the_distance_i_minus_j(T):
    scores = torch.randn(2, 3, T, 2 * T - 1)
    expected = torch.empty(2, 3, T, T)
    for i in range(T):
        for j in range(T):
            expected[..., i, j] = scores[..., i, (T - 1) - (i - j)]     # row k = distance T-1-k
    assert torch.equal(distance_to_key(scores), expected)


def test_relative_sinusoids_are_the_sinusoids_of_the_distance():
    table = relative_sinusoids(4, 6)
    for k, r in enumerate(range(3, -4, -1)):
        for m in range(3):
            w = 10000 ** (-2 * m / 6)
            assert table[k, 2 * m].item() == pytest.approx(math.sin(r * w), abs=1e-6)
            assert table[k, 2 * m + 1].item() == pytest.approx(math.cos(r * w), abs=1e-6)


def naive_relative_attention(att: RelPositionSelfAttention, x, keep=None, causal=False):
    """Scores ((q_i + u).k_j + (q_i + v).W_pos p_{i-j}) / sqrt(d), one pair at a time."""
    B, T, D = x.shape
    H, d = att.heads, D // att.heads
    q, k, v = att.qkv(x).view(B, T, 3, H, d).unbind(2)
    pos = att.linear_pos(relative_sinusoids(T, D)).view(2 * T - 1, H, d)
    scores = torch.empty(B, H, T, T)
    for i in range(T):
        for j in range(T):
            content = ((q[:, i] + att.pos_bias_u) * k[:, j]).sum(-1)
            position = ((q[:, i] + att.pos_bias_v) * pos[T - 1 - (i - j)]).sum(-1)
            scores[:, :, i, j] = (content + position) / math.sqrt(d)
    if keep is not None:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    if causal:
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v).reshape(B, T, D)
    return att.out_proj(y)


@pytest.mark.parametrize("causal", [False, True])
def test_relative_attention_equals_its_definition(causal):
    torch.manual_seed(0)
    att = RelPositionSelfAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    keep = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    mask = None if causal else keep[:, None, None, :]
    with torch.no_grad():
        ours = att(x, mask, causal)
        ref = naive_relative_attention(att, x, None if causal else keep, causal)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_rotation_makes_query_key_products_depend_on_the_offset_only():
    torch.manual_seed(0)
    a, b = torch.randn(8), torch.randn(8)
    T = 12
    qa = rotate(a.expand(1, T, 8).contiguous(), heads=2)[0]      # frame t: a rotated by t
    kb = rotate(b.expand(1, T, 8).contiguous(), heads=2)[0]
    head = slice(4, 8)
    for i, j, s in [(2, 5, 3), (7, 1, 4), (0, 0, 9)]:
        assert (qa[i, head] @ kb[j, head]).item() == pytest.approx(
            (qa[i + s, head] @ kb[j + s, head]).item(), abs=1e-5)
    assert torch.equal(qa[0], a)                                 # position 0: no rotation


def test_rotary_attention_rotates_queries_and_keys_but_not_values():
    torch.manual_seed(0)
    att = RotarySelfAttention(8, 2).eval()
    x = torch.randn(1, 5, 8)
    w, bias = att.qkv.weight, att.qkv.bias
    xr = rotate(x, 2)
    q, k = (xr @ w[:8].T + bias[:8]), (xr @ w[8:16].T + bias[8:16])
    v = x @ w[16:].T + bias[16:]
    heads = lambda t: t.view(1, 5, 2, 4).transpose(1, 2)          # noqa: E731
    probs = (heads(q) @ heads(k).transpose(-1, -2) / 2.0).softmax(-1)
    ref = att.out_proj((probs @ heads(v)).transpose(1, 2).reshape(1, 5, 8))
    with torch.no_grad():
        torch.testing.assert_close(att(x), ref, atol=1e-5, rtol=0)


def aggregator(pos: str, **kw) -> TransformerAggregator:
    torch.manual_seed(0)
    cfg = TransformerAggregatorConfig(embed_dim=16, layers=2, ffn_dim=32, heads=4, conv_pos=4,
                                      conv_pos_groups=2, layer_type="conformer",
                                      conformer_kernel=5, pos_enc_type=pos, **kw)
    return TransformerAggregator(cfg).eval()


@pytest.mark.parametrize("pos", ["rel_pos", "rope"])
def test_padded_batch_gives_each_utterance_its_features_alone(pos):
    agg = aggregator(pos)
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        batched = agg(x, torch.tensor([11, 8]))
        alone = agg(x[1:, :8])
    for a, b in zip(batched.layers + [batched.output], alone.layers + [alone.output]):
        torch.testing.assert_close(a[1, :8], b[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("pos", ["rel_pos", "rope"])
def test_causal_conformer_never_sees_the_future(pos):
    agg = aggregator(pos, causal=True)
    x = torch.randn(1, 10, 16)
    changed = x.clone()
    changed[:, 6:] += torch.randn(1, 4, 16)
    with torch.no_grad():
        torch.testing.assert_close(agg(x).output[:, :6], agg(changed).output[:, :6],
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("pos", ["rel_pos", "rope"])
def test_positions_replace_the_positional_conv_and_train(pos):
    agg = aggregator(pos).train()
    assert agg.positional is None
    agg(torch.randn(2, 9, 16), torch.tensor([9, 6])).output.pow(2).sum().backward()
    attn = agg.layers[0].self_attn
    assert attn.qkv.weight.grad.abs().sum() > 0
    if pos == "rel_pos":
        assert attn.pos_bias_u.grad.abs().sum() > 0 and attn.linear_pos.weight.grad.abs().sum() > 0


def test_relative_positions_need_conformer_blocks():
    from w2v.errors import ConfigError

    with pytest.raises(ConfigError, match="layer_type: conformer"):
        TransformerAggregatorConfig(pos_enc_type="rope")
