"""wav2vec 1.0 future-step contrastive objective: offsets, loss values, negatives, fit checks."""

import math
import types

import pytest
import torch
from torch import nn

from w2v import hookimpl
from w2v import plugin_manager
from w2v.build import build_objective
from w2v.config.structure import structure_component
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Aggregator, AggregatorOutput, Batch, Signal
from w2v.model import SpeechModel
from w2v.plugins.frontends.logmel import LogMelEncoder
from w2v.plugins.wav2vec.aggregator import ConvAggregator
from w2v.plugins.wav2vec.encoder import Wav2VecConvEncoder
from w2v.plugins.wav2vec.gru import GRUAggregator
from w2v.plugins.wav2vec.layers import ENCODER_BASE, ENCODER_LARGE, ENCODER_VQ
from w2v.plugins.wav2vec.negatives import fairseq_negatives, sample_negatives
from w2v.plugins.wav2vec.objective import FutureContrastiveConfig, FutureContrastiveObjective
from w2v.plugins.wav2vec.prediction import contrastive_loss, step_logits

torch.set_num_threads(1)

TINY_ENC = [(4, 4, 2), (4, 3, 2)]      # receptive field 8, stride 4 -> offset 2


def tiny_model(norm="none", seed=0, **model_kw):
    torch.manual_seed(seed)
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC, norm=norm))
    agg = ConvAggregator(ConvAggregator.Config(layers=[(6, 3, 1), (6, 2, 1)], norm=norm), 4,
                         upstream=enc.produces())
    return SpeechModel(enc, agg, **model_kw)


def objective(model, **cfg):
    """Built as recipes build it: from a YAML section, then checked against the model."""
    return build_objective(structure_component(
        "objective", {"name": "future_contrastive", **cfg}, path="objective"), model)


# ------------------------------------------------------------------- offsets


@pytest.mark.parametrize("layers, offset", [
    (ENCODER_BASE, 3), (ENCODER_LARGE, 3), (ENCODER_VQ, 3),  # 1x1 layers keep RF 465 / 160
    ([(8, 10, 5)] + [(8, 3, 2)] * 4 + [(8, 2, 2)] * 2, 2),     # wav2vec 2.0 CNN: 400 / 320
    ([(8, 4, 4), (8, 3, 1)], 3),                               # RF 12 / stride 4
    ([(8, 4, 4)], 1),                                          # RF 4 / stride 4
])
def test_offset_derived_from_the_encoder(layers, offset):
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=layers))
    model = SpeechModel(enc, GRUAggregator(GRUAggregator.Config(dim=4), enc.produces().dim,
                                           upstream=enc.produces()))
    assert objective(model).offset_for(model) == offset


def test_offset_for_logmel_and_explicit_override():
    enc = LogMelEncoder(LogMelEncoder.Config(cmvn=False))
    model = SpeechModel(enc, GRUAggregator(GRUAggregator.Config(dim=4), 80,
                                           upstream=enc.produces()))
    assert objective(model).offset_for(model) == 3               # ceil(400 / 160)
    assert objective(model, offset=5).offset_for(model) == 5


# --------------------------------------------------------- hand-built values


LOGITS = torch.tensor([[[[2.0, -1.0, 0.5]], [[0.0, 1.0, -2.0]]]])   # [B=1, T=2, K=1, 1+N=3]
VALID = torch.tensor([[[True], [False]]])


def softplus(x):
    return math.log1p(math.exp(x))


def test_bce_sums_over_valid_predictions():
    loss, size, correct = contrastive_loss(LOGITS, VALID)
    assert math.isclose(float(loss), softplus(-2) + softplus(-1) + softplus(0.5), rel_tol=1e-6)
    assert int(size) == 1 and int(correct) == 1


def test_balanced_classes_weight_distractors():
    loss, _, _ = contrastive_loss(LOGITS, VALID, negative_weight=0.5)
    assert math.isclose(float(loss), softplus(-2) + 0.5 * (softplus(-1) + softplus(0.5)),
                        rel_tol=1e-6)


def test_infonce_is_cross_entropy_over_candidates():
    loss, size, _ = contrastive_loss(LOGITS, torch.ones(1, 2, 1, dtype=torch.bool), infonce=True)
    first = -math.log(math.exp(2) / (math.exp(2) + math.exp(-1) + math.exp(0.5)))
    second = -math.log(1 / (1 + math.exp(1) + math.exp(-2)))
    assert math.isclose(float(loss), first + second, rel_tol=1e-6) and int(size) == 2


def test_step_logits_pair_contexts_with_shifted_targets():
    torch.manual_seed(0)
    B, T, K, D = 2, 6, 2, 3
    pred, targets = torch.randn(B, T, K, D), torch.randn(B, T, D)
    neg = torch.randint(0, B * T, (B, T, 2))
    lengths = torch.tensor([6, 4])
    logits, valid = step_logits(pred, targets, neg, lengths, offset=1)
    flat = targets.reshape(B * T, D)
    b, t, i = 1, 1, 1                                      # target frame t + 1 + 1 = 3
    assert torch.isclose(logits[b, t, i, 0], pred[b, t, i] @ targets[b, 3])
    assert torch.isclose(logits[b, t, i, 2], pred[b, t, i] @ flat[neg[b, 3, 1]])
    # utterance 1 (4 frames): step 0 has targets 1..3 (3 contexts), step 1 targets 2..3 (2)
    assert valid[1].sum(0).tolist() == [3, 2] and valid[0].sum(0).tolist() == [5, 4]


def reference_loss(model, obj, wave, lengths, neg, infonce, weight):
    """The objective written with plain loops over utterances, contexts, steps, candidates."""
    enc = model.encode(wave, lengths)
    z, lens = enc.features, enc.lengths
    c = model.aggregate(model.project(z), lens).output
    W, bias = obj.head.weight, obj.head.bias
    flat = z.reshape(-1, z.shape[-1])
    off = obj.offset_for(model)
    total, count = 0.0, 0
    for b in range(z.shape[0]):
        for t in range(int(lens[b])):
            for i in range(W.shape[0]):
                j = t + off + i
                if j >= int(lens[b]):
                    continue
                p = c[b, t] @ W[i] + bias
                scores = [float(p @ z[b, j])] + [float(p @ flat[k]) for k in neg[b, j]]
                if infonce:
                    total += -scores[0] + math.log(sum(math.exp(s) for s in scores))
                else:
                    total += softplus(-scores[0]) + weight * sum(softplus(s) for s in scores[1:])
                count += 1
    return total, count


@pytest.mark.parametrize("infonce, balanced", [(False, False), (False, True), (True, False)])
def test_objective_matches_a_loop_reference_with_injected_negatives(infonce, balanced):
    model = tiny_model().eval()
    obj = objective(model, prediction_steps=3, num_negatives=2, infonce=infonce,
                    balanced_classes=balanced).eval()
    wave, lengths = torch.randn(2, 60), torch.tensor([60, 44])       # 14 and 10 frames
    neg = torch.randint(0, 2 * 14, (2, 14, 2))
    out = obj(Batch(source=wave, lengths=lengths, extra={"neg_idx": neg}), model, 0)
    with torch.no_grad():
        ref, count = reference_loss(model, obj, wave, lengths, neg, infonce,
                                    0.5 if balanced else 1.0)
    assert int(out.sample_size) == count == (12 + 11 + 10) + (8 + 7 + 6)
    assert math.isclose(out.loss.item(), ref, rel_tol=1e-4)
    assert math.isclose(float(out.stats["loss_bits"]), ref / count / math.log(2), rel_tol=1e-4)
    assert 0.0 <= float(out.stats["accuracy"]) <= 1.0


def piecewise_tones(batch, samples, segment, seed=0):
    """Tones whose frequency changes every ``segment`` samples: the near future is predictable
    (same segment) and distractors from other segments differ."""
    gen = torch.Generator().manual_seed(seed)
    freqs = torch.randint(0, 8, (batch, samples // segment), generator=gen).float() * 250 + 300
    t = torch.arange(samples) / 16000
    wave = torch.sin(2 * math.pi * freqs.repeat_interleave(segment, 1) * t)
    return wave + 0.05 * torch.randn(batch, samples, generator=gen)


@pytest.mark.parametrize("infonce, chance_bits, steps", [
    (True, math.log2(5), 30),   # uniform over 1 + 4 candidates
    (False, 2.0, 60),           # balanced BCE at logit 0: 2 ln 2 nats (BCE learns slower)
])
def test_loss_drops_below_chance_on_tiny_data(infonce, chance_bits, steps):
    torch.manual_seed(0)
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=[(16, 10, 5), (16, 8, 4)]))
    agg = ConvAggregator(ConvAggregator.Config(layers=[(16, 3, 1)] * 2), 16,
                         upstream=enc.produces())
    model = SpeechModel(enc, agg)
    obj = objective(model, prediction_steps=4, num_negatives=4, infonce=infonce,
                    balanced_classes=not infonce)
    batch = Batch(source=piecewise_tones(4, 2000, 200),
                  lengths=torch.tensor([2000, 2000, 1700, 1500]))
    opt = torch.optim.Adam([*model.parameters(), *obj.parameters()], lr=1e-2)
    bits, accuracy = [], []
    for step in range(steps):
        out = obj(batch, model, step)
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
        bits.append(float(out.stats["loss_bits"]))
        accuracy.append(float(out.stats["accuracy"]))
    assert sum(bits[-3:]) / 3 < 0.95 * min(bits[0], chance_bits), bits
    assert sum(accuracy[-3:]) / 3 > 0.3 > accuracy[0], accuracy   # chance: 1 in 5


def test_gumbel_quantized_targets_add_the_unnormalised_diversity_term():
    torch.manual_seed(0)
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC, norm="none"))
    quant = structure_component("quantizer", {"name": "gumbel", "groups": 2, "num_vars": 4}
                                ).build(enc.produces())
    agg = ConvAggregator(ConvAggregator.Config(layers=[(6, 2, 1)]), quant.produces().dim,
                         upstream=quant.produces())
    model = SpeechModel(enc, agg, quantizer=quant, quantize="both").eval()
    obj = objective(model, prediction_steps=2, num_negatives=2, diversity_weight=0.5).eval()
    wave = torch.randn(2, 60)
    out = obj(Batch(source=wave), model, 0)
    q = quant(enc(wave).features)
    extra = 0.5 * 2 * 4 * q.diversity.item()
    contrastive = float(out.stats["contrastive_bits"]) * math.log(2) * int(out.sample_size)
    assert math.isclose(out.loss.item(), contrastive + extra * int(out.sample_size), rel_tol=1e-5)
    assert "prob_perplexity" in out.stats or "code_perplexity" in out.stats


# ----------------------------------------------------------------- negatives


def test_fixed_negatives_stay_in_the_utterance_and_skip_the_target():
    gen = torch.Generator().manual_seed(0)
    lengths, T = torch.tensor([5, 3, 8]), 8
    idx = sample_negatives(lengths, T, 30, generator=gen)                # [3, 8, 30]
    utt, local = idx // T, idx % T
    for b, n in enumerate(lengths.tolist()):
        assert (utt[b] == b).all()
        assert (local[b, :n] < n).all()
        assert not (local[b, :n] == torch.arange(n)[:, None]).any()
        assert set(local[b, :n].flatten().tolist()) == set(range(n))   # uniform coverage


def test_fixed_sample_distance_draws_near_the_target():
    gen = torch.Generator().manual_seed(0)
    idx = sample_negatives(torch.tensor([40, 40]), 40, 20, sample_distance=5, generator=gen)
    local = idx % 40
    dist = (local - torch.arange(40)[None, :, None]).abs()
    assert (dist <= 5).all() and (dist > 0).all()
    assert (idx // 40 == torch.tensor([0, 1])[:, None, None]).all()


def test_fixed_cross_sample_negatives_exclude_only_the_target_itself():
    gen = torch.Generator().manual_seed(0)
    lengths, T = torch.tensor([3, 2]), 3
    idx = sample_negatives(lengths, T, 0, 200, generator=gen)             # [2, 3, 200]
    own = (torch.arange(2)[:, None] * T + torch.arange(T)[None])[..., None]
    valid_flat = {0, 1, 2, 3, 4}                                          # frame (1, 2) is padding
    for b, n in enumerate(lengths.tolist()):
        assert not (idx[b, :n] == own[b, :n]).any()
        assert set(idx[b, :n].flatten().tolist()) <= valid_flat
    assert (idx[1, 0] == 0).any()                                         # frame (0, 0) is allowed


def test_fairseq_compat_sample_distance_reads_the_first_frames():
    gen = torch.Generator().manual_seed(0)
    idx = fairseq_negatives(2, 40, 20, sample_distance=5, generator=gen)  # [2, 40, 20]
    assert (idx[0] < 5).all()                        # target 30 draws from frames 0..4
    assert ((idx[1] >= 5) & (idx[1] < 10)).all()     # utterance 1 offset by 5: frames of utt 0


def test_fairseq_compat_cross_sample_exclusion_uses_the_local_index():
    gen = torch.Generator().manual_seed(0)
    idx = fairseq_negatives(2, 3, 0, 300, generator=gen)                  # [2, 3, 300]
    fixed = sample_negatives(torch.tensor([3, 3]), 3, 0, 300, generator=gen)
    own = torch.tensor([[0, 1, 2], [3, 4, 5]])[..., None]
    assert (idx[1] == own[1]).any()                   # compat: (1, t) draws itself
    assert not (fixed == own).any()                   # fixed: never


def test_fairseq_compat_layout_lets_a_target_draw_itself():
    gen = torch.Generator().manual_seed(0)
    idx = fairseq_negatives(1, 4, 8, generator=gen)                       # [1, 4, 8]
    fixed = sample_negatives(torch.tensor([4]), 4, 8, generator=gen)
    t = torch.arange(4)[None, :, None]
    assert (idx == t).any() and not (fixed == t).any()


def test_fairseq_compat_objective_uses_compat_sampling(monkeypatch):
    model = tiny_model().eval()
    calls = []
    import w2v.plugins.wav2vec.objective as mod
    real = mod.fairseq_negatives
    monkeypatch.setattr(mod, "fairseq_negatives", lambda *a, **k: calls.append(a) or real(*a, **k))
    obj = objective(model, prediction_steps=2, num_negatives=3, fairseq_compat=True)
    obj(Batch(source=torch.randn(2, 60)), model, 0)
    assert calls == [(2, 14, 3, 0)]


# ------------------------------------------------------------------ fitting


class BidirectionalGRU(Aggregator):
    """A non-causal aggregator: sees both directions."""

    Config = FutureContrastiveConfig  # unused; registration needs an attrs class

    def __init__(self, input_dim, upstream=None):
        super().__init__()
        self.input_dim = input_dim
        self.gru = nn.GRU(input_dim, 3, batch_first=True, bidirectional=True)
        self.upstream = upstream

    def produces(self):
        return self.upstream.then(dim=6, causal=False)

    def forward(self, x, lengths=None, layers=None):
        return AggregatorOutput(output=self.gru(x)[0], layers=[], lengths=lengths)


@pytest.fixture
def registry_with_bigru():
    plugin = types.ModuleType("bigru_plugin")
    plugin.W2V_PLUGIN_API = "2.0"

    @hookimpl
    def w2v_register_components(registrar):
        registrar.add_component("aggregator", "bigru", BidirectionalGRU)

    plugin.w2v_register_components = w2v_register_components
    plugin_manager.reset(plugin_manager.load_plugins(extra_modules=[("bigru", plugin)]))
    yield  # tests/conftest.py restores the process-wide plugin set afterwards


def test_rejects_a_non_causal_aggregator_naming_both(registry_with_bigru):
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC))
    model = SpeechModel(enc, BidirectionalGRU(4, upstream=enc.produces()))
    with pytest.raises(FitError) as info:
        objective(model)
    text = str(info.value)
    assert "objective `future_contrastive`" in text and "aggregator `bigru`" in text
    assert "not causal" in text


def test_accepts_the_group_norm_leak_and_declared_causal_aggregators():
    model = tiny_model(norm="group")
    assert not model.aggregator.produces().causal          # the leak is reported ...
    objective(model).check_model(model)                      # ... and accepted


@pytest.mark.parametrize("causal", [True, False])
def test_wav2vec2_transformer_fits_only_in_causal_mode(causal):
    """Its own causal flag decides, even over a GroupNorm encoder whose leak makes
    ``produces().causal`` False."""
    torch.manual_seed(0)
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC))
    agg = structure_component("aggregator", {
        "name": "transformer", "embed_dim": 8, "layers": 1, "ffn_dim": 16, "heads": 2,
        "conv_pos": 4, "conv_pos_groups": 2, "causal": causal}).build(enc.produces())
    model = SpeechModel(enc, agg)
    assert not agg.produces().causal
    if not causal:
        with pytest.raises(FitError, match="aggregator `transformer`"):
            objective(model)
        return
    out = objective(model, prediction_steps=2, num_negatives=2)(
        Batch(source=torch.randn(2, 60), lengths=torch.tensor([60, 44])), model, 0)
    assert torch.isfinite(out.loss) and int(out.sample_size) == (12 + 11) + (8 + 7)


def test_rejects_models_without_aggregator_and_mismatched_heads():
    enc = Wav2VecConvEncoder(Wav2VecConvEncoder.Config(layers=TINY_ENC))
    with pytest.raises(FitError, match="no aggregator"):
        objective(SpeechModel(enc))
    obj = FutureContrastiveObjective.from_config(FutureContrastiveConfig(),
                                                 Signal(kind="frames", dim=9))
    with pytest.raises(FitError, match="context width 9"):
        obj.check_model(tiny_model())


def test_built_from_a_yaml_section_with_the_model():
    model = tiny_model()
    obj = structure_component("objective", {"name": "future_contrastive", "prediction_steps": 4,
                                            "infonce": True}).build(model=model)
    assert obj.head.weight.shape == (4, 6, 4) and obj.infonce
    with pytest.raises(ConfigError, match="at least one distractor"):
        structure_component("objective", {"name": "future_contrastive", "num_negatives": 0})
