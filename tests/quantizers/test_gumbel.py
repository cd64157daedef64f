"""GumbelQuantizer: straight-through gradients, schedules, perplexities, HF parity."""

from __future__ import annotations

import math

import pytest
import torch

from w2v.errors import ConfigError
from w2v.interfaces import Signal
from w2v.plugins.quantizers.gumbel import GumbelQuantizer, GumbelQuantizerConfig

torch.set_num_threads(1)


def make(C=12, **kw) -> GumbelQuantizer:
    kw.setdefault("groups", 2)
    kw.setdefault("num_vars", 6)
    kw.setdefault("dim", 8)
    return GumbelQuantizer(GumbelQuantizer.Config(**kw), C)


def naive_vectors(q: GumbelQuantizer, weights: torch.Tensor) -> torch.Tensor:
    """fairseq/HF's broadcast: one-hot [BT, G*V, 1] * codebook [G*V, d], summed per group."""
    G, V = q.groups, q.num_vars
    book = q.codevectors
    if q.combine_groups:
        book = book.repeat(1, G, 1)
    per = weights.reshape(-1, G * V, 1) * book                       # [BT, G*V, d]
    return per.view(-1, G, V, book.shape[-1]).sum(-2).reshape(weights.shape[0], -1)


def test_training_forward_is_hard_one_hot_with_straight_through_gradients():
    torch.manual_seed(0)
    q = make().train()
    x = torch.randn(3, 5, 12, requires_grad=True)
    out = q(x)
    assert out.vectors.shape == (3, 5, 8) and out.codes.shape == (3, 5, 2)
    assert out.codes.dtype == torch.long
    # the forward value is exactly the chosen codebook entries
    assert torch.allclose(out.vectors, q.lookup(out.codes), atol=1e-6)
    (out.vectors.square().sum() + out.diversity).backward()
    assert q.weight_proj.weight.grad is not None and q.weight_proj.weight.grad.abs().sum() > 0
    assert q.codevectors.grad is not None and q.codevectors.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0


def test_eval_takes_the_argmax():
    torch.manual_seed(1)
    q = make().eval()
    x = torch.randn(2, 7, 12)
    out = q(x)
    logits = q.weight_proj(x).view(2, 7, 2, 6)
    assert torch.equal(out.codes, logits.argmax(-1))
    assert torch.allclose(out.vectors, q.lookup(out.codes))
    assert torch.equal(q(x).codes, out.codes)  # deterministic


def test_per_group_matmul_equals_the_broadcast_sum():
    torch.manual_seed(2)
    for combine in (False, True):
        q = make(combine_groups=combine, hard=False).train()
        x = torch.randn(2, 4, 12)
        torch.manual_seed(7)
        out = q(x)
        torch.manual_seed(7)  # same Gumbel noise: one exponential_ draw of the same shape
        logits = q.weight_proj(x).float().view(-1, 2, 6)
        g = -torch.empty_like(logits).exponential_().log()
        soft = torch.softmax((logits + g) / q.temperature, -1)
        ref = naive_vectors(q, soft).view(2, 4, 8)
        assert torch.allclose(out.vectors, ref, atol=1e-5)
    assert make(combine_groups=True).codevectors.shape == (1, 6, 4)
    assert make(combine_groups=False).codevectors.shape == (1, 12, 4)


def test_exponential_temperature_schedule():
    q = make(temp=(2.0, 0.5, 0.999995))
    for n in (0, 1000, 100_000, 300_000, 10_000_000):
        q.set_num_updates(n)
        assert q.temperature == pytest.approx(max(2.0 * 0.999995 ** n, 0.5))
    q.set_num_updates(277_000)
    assert q.temperature == pytest.approx(0.5, abs=2e-3)


def test_linear_temperature_schedule_over_a_fraction_of_max_updates():
    q = make(temp=(2.0, 0.5, 0.999995), temp_schedule="linear", temp_fraction=0.7)
    q.set_num_updates(50)
    assert q.temperature == 2.0  # max_updates unknown: hold the maximum
    q.set_max_updates(1000)
    for n, expected in [(0, 2.0), (350, 1.25), (700, 0.5), (900, 0.5)]:
        q.set_num_updates(n)
        assert q.temperature == pytest.approx(expected)
    q.set_num_updates(350)
    assert q(torch.randn(1, 3, 12)).stats["temp"] == pytest.approx(1.25)


def test_perplexity_bounds_and_values():
    torch.manual_seed(3)
    G, V = 2, 6
    q = make().train()
    out = q(torch.randn(4, 50, 12))
    code, prob = float(out.stats["code_perplexity"]), float(out.stats["prob_perplexity"])
    assert G - 1e-4 <= code <= G * V + 1e-4
    assert G - 1e-4 <= prob <= G * V + 1e-4
    assert float(out.diversity.detach()) == pytest.approx((G * V - prob) / (G * V), rel=1e-6)
    # collapsed logits: every frame picks entry 0 of each group -> code ppl G
    with torch.no_grad():
        q.weight_proj.weight.zero_()
        q.weight_proj.bias.copy_(torch.tensor([50.0] + [0.0] * 5 + [50.0] + [0.0] * 5))
    out = q.eval()(torch.randn(2, 9, 12))
    assert float(out.stats["code_perplexity"]) == pytest.approx(G, abs=1e-4)
    assert float(out.stats["prob_perplexity"]) == pytest.approx(G, abs=1e-3)


def test_perplexities_count_only_valid_frames():
    torch.manual_seed(4)
    q = make().eval()
    x = torch.randn(2, 10, 12)
    lengths = torch.tensor([10, 4])
    out = q(x, lengths)
    valid = torch.cat([x[0], x[1, :4]])[None]
    ref = q(valid)
    assert float(out.stats["code_perplexity"]) == pytest.approx(float(ref.stats["code_perplexity"]))
    assert float(out.stats["prob_perplexity"]) == pytest.approx(float(ref.stats["prob_perplexity"]),
                                                                rel=1e-5)


def test_deep_weight_projection_and_config_checks():
    q = make(weight_proj_depth=3, weight_proj_factor=2)
    linears = [m for m in q.weight_proj_hidden if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [24, 24]
    assert q.weight_proj.in_features == 24 and q.weight_proj.out_features == 12
    assert q(torch.randn(1, 3, 12)).vectors.shape == (1, 3, 8)
    with pytest.raises(ConfigError):
        GumbelQuantizerConfig(dim=7, groups=2)
    with pytest.raises(ConfigError):
        GumbelQuantizerConfig(temp=(0.5, 2.0, 0.9))
    cfg = GumbelQuantizerConfig(groups=2, num_vars=4, dim=0)
    built = GumbelQuantizer.from_config(cfg, Signal(kind="frames", dim=10, stride=320))
    assert built.dim == 10 and built.produces().dim == 10 and built.produces().stride == 320


def test_autocast_keeps_softmax_in_fp32():
    torch.manual_seed(5)
    q = make().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(torch.randn(2, 5, 12))
    assert out.stats["prob_perplexity"].dtype == torch.float32
    assert out.diversity.dtype == torch.float32
    out.vectors.float().sum().backward()
    assert q.codevectors.grad is not None


# ------------------------------------------------------------------ HF parity
def hf_pair(C=12, G=2, V=6, dim=8):
    from transformers import Wav2Vec2Config
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2GumbelVectorQuantizer

    cfg = Wav2Vec2Config(conv_dim=(C,), conv_stride=(5,), conv_kernel=(10,),
                         num_codevector_groups=G, num_codevectors_per_group=V, codevector_dim=dim)
    hf = Wav2Vec2GumbelVectorQuantizer(cfg)
    ours = GumbelQuantizer(GumbelQuantizer.Config(groups=G, num_vars=V, dim=dim), C)
    hf.load_state_dict(ours.state_dict())  # same parameter names and shapes
    return hf, ours


def test_parity_with_hugging_face_in_eval():
    torch.manual_seed(6)
    hf, ours = hf_pair()
    hf.eval(), ours.eval()
    x = torch.randn(3, 11, 12)
    hf_vectors, hf_ppl = hf(x)
    out = ours(x)
    assert torch.allclose(out.vectors, hf_vectors, atol=1e-6)
    # HF's eval perplexity is the hard-code perplexity
    assert float(out.stats["code_perplexity"]) == pytest.approx(float(hf_ppl.detach()), rel=1e-5)
    # and its codes are the argmax ours returns
    idx = hf.weight_proj(x).view(3, 11, 2, 6).argmax(-1)
    assert torch.equal(out.codes, idx)


def test_parity_with_hugging_face_in_training():
    torch.manual_seed(8)
    hf, ours = hf_pair()
    hf.train(), ours.train()
    ours.set_num_updates(1234)
    hf.temperature = ours.temperature
    x = torch.randn(2, 9, 12)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, :9] = True
    mask[1, :5] = True
    torch.manual_seed(11)
    hf_vectors, hf_ppl = hf(x, mask_time_indices=mask)
    torch.manual_seed(11)  # same Gumbel noise (same shape, same RNG stream)
    out = ours(x, torch.tensor([9, 5]))
    assert torch.allclose(out.vectors, hf_vectors, atol=1e-6)
    assert float(out.stats["prob_perplexity"]) == pytest.approx(float(hf_ppl.detach()), rel=1e-5)
    # diversity as HF computes it (before multiplying by the masked count)
    assert float(out.diversity.detach()) == pytest.approx((12 - float(hf_ppl.detach())) / 12, rel=1e-5)
    assert math.isfinite(float(out.stats["code_perplexity"]))
