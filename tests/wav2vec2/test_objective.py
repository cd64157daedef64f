"""Negatives, contrastive losses and the wav2vec 2.0 masked contrastive objective."""

from __future__ import annotations

import math

import attrs

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from w2v.errors import ConfigError, FitError
from w2v.interfaces import (Aggregator, AggregatorOutput, Batch, Encoder, EncoderOutput, Signal,
                            lengths_to_padding_mask)
from w2v.model import SpeechModel
from w2v.plugins.quantizers.gumbel import GumbelQuantizer
from w2v.plugins.quantizers.kmeans import KMeansQuantizer
from w2v.plugins.wav2vec2.contrastive_loss import (ContrastiveScores, InfoNCE, PMLContrastiveLoss,
                                                   PMLContrastiveLossConfig)
from w2v.plugins.wav2vec2.masking import SpanMasker, SpanMaskerConfig
from w2v.plugins.wav2vec2.negatives import (negatives_from_hf, negatives_to_hf,
                                            sample_negative_indices, sample_negatives)
from w2v.plugins.wav2vec2.objective import MaskedContrastiveConfig, MaskedContrastiveObjective

torch.set_num_threads(1)


# ------------------------------------------------------------------ negatives
def test_negatives_stay_in_their_utterance_and_never_hit_the_positive():
    torch.manual_seed(0)
    counts = torch.tensor([5, 1, 9, 2, 0, 7])
    idx = sample_negative_indices(counts, 20)
    M = int(counts.sum())
    assert idx.shape == (M, 20)
    owner = torch.repeat_interleave(torch.arange(6), counts)
    own = torch.arange(M)
    single = counts[owner] == 1
    assert (owner[idx] == owner[:, None]).all()
    assert ((idx != own[:, None]) | single[:, None]).all()
    assert (idx[single] == own[single, None]).all()        # nothing else to draw from


def test_negatives_are_uniform_over_the_other_masked_frames():
    torch.manual_seed(1)
    idx = sample_negative_indices(torch.tensor([6]), 6000)
    for t in range(6):
        freq = torch.bincount(idx[t], minlength=6).double() / 6000
        assert freq[t] == 0
        others = torch.cat([freq[:t], freq[t + 1:]])
        assert (others - 0.2).abs().max() < 0.03


def test_cross_sample_negatives_draw_from_the_whole_batch_except_self():
    torch.manual_seed(2)
    counts = torch.tensor([4, 4])
    idx = sample_negative_indices(counts, 3, cross_sample_negatives=50)
    assert idx.shape == (8, 53)
    cross = idx[:, 3:]
    assert (cross != torch.arange(8)[:, None]).all()
    assert (cross >= 4).any() and (cross < 4).any()


def test_fairseq_shaped_sampling_and_injected_indices():
    torch.manual_seed(3)
    y = torch.randn(2, 5, 4)
    negs, idx = sample_negatives(y, 7)
    assert negs.shape == (7, 2, 5, 4) and idx.shape == (2, 5, 7)
    flat = y.reshape(10, 4)
    assert torch.equal(negs.permute(1, 2, 0, 3), flat[idx])
    assert ((idx // 5) == torch.arange(2)[:, None, None]).all()     # same utterance
    again, same = sample_negatives(y, 7, neg_idx=idx)
    assert same is idx and torch.equal(again, negs)


def test_hugging_face_negative_indices_convert_both_ways():
    from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

    np.random.seed(4)
    B, T, K = 3, 12, 4
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, [1, 2, 3, 7, 8]] = True
    mask[1, [0, 5, 6, 10, 11]] = True
    mask[2, [2, 3, 4, 5, 9]] = True
    hf = torch.from_numpy(_sample_negative_indices((B, T), K, mask.numpy())).long()
    ours = negatives_from_hf(hf, mask)
    feats = torch.randn(B, T, 6)
    # HF gathers over the flat B*T sequence; ours over the masked frames: same vectors
    assert torch.equal(feats[mask][ours], feats.view(-1, 6)[hf[mask]])
    assert torch.equal(negatives_to_hf(ours, mask), hf)
    owner = torch.repeat_interleave(torch.arange(B), mask.sum(1))
    assert (owner[ours] == owner[:, None]).all()


# ---------------------------------------------------------- contrastive losses
def random_scores(M=7, K=5, D=8, temp=0.1, seed=5) -> ContrastiveScores:
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(M, D, generator=g)
    cand = torch.randn(M, 1 + K, D, generator=g)
    cand[0, 2] = cand[0, 0]                                   # a distractor equal to its positive
    cand[3, 4] = cand[3, 0]
    obj = MaskedContrastiveObjective(MaskedContrastiveConfig(logit_temp=temp,
                                                             contrastive_loss=None), D, D)
    return obj.scores(pred, cand)


def test_scores_are_cosine_over_temperature_with_excluded_duplicates():
    s = random_scores()
    ref = F.cosine_similarity(s.predictions[:, None], s.candidates, dim=-1) / 0.1
    assert torch.isinf(s.logits[0, 2]) and torch.isinf(s.logits[3, 4])
    assert (~s.valid).sum() == 2
    assert torch.allclose(s.logits[s.valid], ref[s.valid], atol=1e-5)


def test_infonce_is_summed_cross_entropy_to_the_positive():
    s = random_scores()
    loss = InfoNCE()(s)
    manual = -(s.logits[:, 0] - torch.logsumexp(s.logits, dim=1)).sum()
    assert torch.isfinite(loss) and float(loss) == pytest.approx(float(manual), rel=1e-6)


def test_pml_ntxent_equals_infonce():
    s = random_scores(M=9, K=6)
    config = PMLContrastiveLossConfig(loss="NTXentLoss", kwargs={"temperature": 0.1}, chunk_size=4)
    pml = PMLContrastiveLoss(config)
    ours = InfoNCE()(s)
    theirs = pml(s)
    assert float(theirs) == pytest.approx(float(ours), rel=1e-4)
    whole = PMLContrastiveLoss(attrs.evolve(config, chunk_size=1000))(s)
    assert float(whole) == pytest.approx(float(theirs), rel=1e-5)
    # gradients reach the predictions and the candidates through the adapter
    pred = s.predictions.clone().requires_grad_()
    cand = s.candidates.clone().requires_grad_()
    pml(ContrastiveScores(logits=s.logits, predictions=pred, candidates=cand, valid=s.valid,
                          temperature=0.1)).backward()
    assert pred.grad.abs().sum() > 0 and cand.grad.abs().sum() > 0


def test_pml_config_errors_name_the_loss():
    with pytest.raises(ConfigError, match="NTXentLoss"):
        PMLContrastiveLoss.from_config(PMLContrastiveLossConfig(loss="NTXentLos"))
    with pytest.raises(ConfigError):
        PMLContrastiveLoss.from_config(PMLContrastiveLossConfig(kwargs={"no_such": 1}))


def test_accuracy_does_not_count_all_equal_rows():
    logits = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 0.0], [1.0, 1.0, 1.0],
                           [2.0, -math.inf, 1.0]])
    assert int(MaskedContrastiveObjective.correct(logits)) == 2


# ---------------------------------------------------------------- tiny model
class TinyEncoder(Encoder):
    """Two strided convs (stride 10, receptive field 20) + LayerNorm; penalty = mean(f^2)."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.conv = nn.Sequential(nn.Conv1d(1, dim, 10, 5), nn.GELU(), nn.Conv1d(dim, dim, 3, 2))
        self.norm = nn.LayerNorm(dim)

    def produces(self) -> Signal:
        return Signal(kind="frames", dim=self.dim, stride=10, receptive_field=20)

    def forward(self, source, lengths=None) -> EncoderOutput:
        f = self.conv(source[:, None]).transpose(1, 2)
        out_lengths = None if lengths is None else self.output_lengths(lengths)
        return EncoderOutput(features=self.norm(f), lengths=out_lengths,
                             penalty=f.float().pow(2).mean())


class TinyAggregator(Aggregator):
    """A convolution over time (relative positions, as wav2vec 2.0's) + one Transformer layer."""

    def __init__(self, dim: int = 24) -> None:
        super().__init__()
        self.input_dim = dim
        self.pos = nn.Conv1d(dim, dim, 5, padding=2)
        layer = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.0, batch_first=True)
        self.net = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def produces(self) -> Signal:
        return Signal(kind="frames", dim=self.input_dim, stride=10, causal=False)

    def forward(self, x, lengths=None, layers=None) -> AggregatorOutput:
        x = x + F.gelu(self.pos(x.transpose(1, 2))).transpose(1, 2)
        out = self.net(x, src_key_padding_mask=lengths_to_padding_mask(lengths, x.shape[1]))
        return AggregatorOutput(output=out, layers=[out], lengths=lengths)


def tiny_model(quantizer="gumbel", quantize="targets", masker=True, require_same=True):
    enc = TinyEncoder(16)
    q = None
    if quantizer == "gumbel":
        q = GumbelQuantizer(GumbelQuantizer.Config(groups=2, num_vars=8, dim=8), 16)
    elif quantizer == "kmeans":
        q = KMeansQuantizer(KMeansQuantizer.Config(groups=2, num_vars=8), 16)
    m = SpanMasker(SpanMaskerConfig(mask_prob=0.5, mask_length=3,
                                    require_same_masks=require_same), 24) if masker else None
    return SpeechModel(enc, TinyAggregator(24), quantizer=q, masker=m, quantize=quantize)


def objective_for(model, **cfg):
    cfg.setdefault("num_negatives", 6)
    cfg.setdefault("final_dim", 12)
    config = MaskedContrastiveConfig(contrastive_loss=None, **cfg)
    obj = MaskedContrastiveObjective.from_config(config, model.context_signal(), model=model)
    obj.check_model(model)
    return obj


def wave_batch(B=3, S=400, seed=0, lengths=None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(source=torch.randn(B, S, generator=g), lengths=lengths)


def test_loss_decreases_over_a_few_steps():
    torch.manual_seed(0)
    model = tiny_model()
    obj = objective_for(model)
    params = list(model.parameters()) + list(obj.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    batch = wave_batch()
    T = model.encoder.output_lengths(torch.tensor([400])).item()
    torch.manual_seed(1)
    batch.extra["mask"] = model.masker.sample(3, T)
    losses = []
    for step in range(30):
        torch.manual_seed(100 + step)
        out = obj(batch, model, step)
        assert out.sample_size == int(batch.extra["mask"].sum())
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
        losses.append(float(out.stats["contrastive"]))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    for key in ("loss", "contrastive", "diversity", "penalty", "accuracy", "code_perplexity",
                "prob_perplexity", "temp", "mask_fraction"):
        assert key in out.stats, key


def test_extra_terms_are_weighted_and_scaled_by_the_masked_count():
    torch.manual_seed(2)
    model = tiny_model().eval()
    batch = wave_batch(seed=1)
    T = model.encoder.output_lengths(torch.tensor([400])).item()
    batch.extra["mask"] = model.masker.sample(3, T)
    M = int(batch.extra["mask"].sum())
    batch.extra["neg_idx"] = sample_negative_indices(batch.extra["mask"].sum(1), 6)
    plain = objective_for(model, loss_weights=[0.0, 0.0])
    weighted = objective_for(model, loss_weights=[0.1, 10.0])
    weighted.load_state_dict(plain.state_dict())
    a, b = plain(batch, model), weighted(batch, model)
    div, pen = float(b.stats["diversity"]), float(b.stats["penalty"])
    assert float(a.stats["contrastive"]) == pytest.approx(float(b.stats["contrastive"]))
    assert float((b.loss - a.loss).detach()) == pytest.approx((0.1 * div + 10.0 * pen) * M, rel=1e-4)
    assert 0 <= float(b.stats["accuracy"]) <= 1
    assert float(b.stats["mask_fraction"]) == pytest.approx(M / (3 * T))


def test_chance_level_is_the_log_of_the_valid_candidates():
    torch.manual_seed(4)
    model = tiny_model().eval()
    obj = objective_for(model)
    batch = wave_batch(seed=2)
    T = model.encoder.output_lengths(torch.tensor([400])).item()
    batch.extra["mask"] = model.masker.sample(3, T)
    batch.extra["neg_idx"] = sample_negative_indices(batch.extra["mask"].sum(1), 6)
    captured = {}
    scores = obj.indexed_scores
    obj.indexed_scores = lambda *args: captured.setdefault("s", scores(*args))
    out = obj(batch, model)
    valid = captured["s"].valid
    expected = valid.sum(-1).float().log().mean()
    assert float(out.stats["contrastive_chance"]) == pytest.approx(float(expected))
    # uniform logits give exactly that loss
    uniform = torch.zeros_like(captured["s"].logits).masked_fill(~valid, float("-inf"))
    ce = torch.nn.functional.cross_entropy(uniform, torch.zeros(len(uniform), dtype=torch.long))
    assert float(ce) == pytest.approx(float(expected), rel=1e-5)


def test_kmeans_targets_add_the_weighted_aux_loss():
    torch.manual_seed(3)
    model = tiny_model(quantizer="kmeans").eval()
    batch = wave_batch(seed=2)
    T = model.encoder.output_lengths(torch.tensor([400])).item()
    batch.extra["mask"] = model.masker.sample(3, T)
    batch.extra["neg_idx"] = sample_negative_indices(batch.extra["mask"].sum(1), 6)
    M = int(batch.extra["mask"].sum())
    a = objective_for(model, loss_weights=[0.0, 0.0], aux_loss_weight=0.0)
    b = objective_for(model, loss_weights=[0.0, 0.0], aux_loss_weight=2.0)
    b.load_state_dict(a.state_dict())
    la, lb = a(batch, model), b(batch, model)
    assert float((lb.loss - la.loss).detach()) == pytest.approx(2.0 * float(lb.stats["aux_loss"]) * M,
                                                     rel=1e-4)
    lb.loss.backward()
    assert model.quantizer.embedding.grad.abs().sum() > 0


def test_ragged_masks_unquantized_targets_glu_and_codebook_negatives():
    torch.manual_seed(4)
    lengths = torch.tensor([400, 300, 220])
    model = tiny_model(quantize="targets", require_same=False)
    obj = objective_for(model, target_glu=True, codebook_negatives=3, cross_sample_negatives=2)
    out = obj(wave_batch(lengths=lengths), model)
    enc_lengths = model.encoder.output_lengths(lengths)
    assert out.sample_size > 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert obj.target_glu[0].weight.grad is not None
    plain = tiny_model(quantizer=None, quantize="none")
    obj2 = objective_for(plain)
    assert obj2.project_q.in_features == 16
    out2 = obj2(wave_batch(lengths=lengths), plain)
    assert torch.isfinite(out2.loss) and "code_perplexity" not in out2.stats
    assert float(out2.stats["mask_fraction"]) <= 1.0
    assert enc_lengths.tolist() == [39, 29, 21]


def test_check_model_rejects_models_that_do_not_fit():
    model = tiny_model()
    obj = objective_for(model)
    with pytest.raises(FitError, match="masker"):
        obj.check_model(tiny_model(masker=False))
    wrong = tiny_model()
    wrong.masker = SpanMasker(SpanMaskerConfig(), 20)
    with pytest.raises(FitError, match="width"):
        obj.check_model(wrong)
    with pytest.raises(FitError, match="target width"):
        obj.check_model(tiny_model(quantizer=None, quantize="none"))
    with pytest.raises(FitError, match="codebook_negatives"):
        objective_for(tiny_model(quantizer=None, quantize="none"), codebook_negatives=2)
    with pytest.raises(ConfigError):
        MaskedContrastiveConfig(num_negatives=0, contrastive_loss=None)


# ------------------------------------------------------- Hugging Face parity
class HFEncoder(Encoder):
    """Hugging Face's conv feature encoder + feature LayerNorm as a w2v encoder."""

    def __init__(self, hf):
        super().__init__()
        self.extractor = hf.wav2vec2.feature_extractor
        self.norm = hf.wav2vec2.feature_projection.layer_norm
        self.dim = self.norm.normalized_shape[0]

    def produces(self) -> Signal:
        return Signal(kind="frames", dim=self.dim, stride=10, receptive_field=20)

    def forward(self, source, lengths=None) -> EncoderOutput:
        return EncoderOutput(features=self.norm(self.extractor(source).transpose(1, 2)))


class HFAggregator(Aggregator):
    def __init__(self, hf):
        super().__init__()
        self.encoder = hf.wav2vec2.encoder
        self.input_dim = hf.config.hidden_size

    def produces(self) -> Signal:
        return Signal(kind="frames", dim=self.input_dim, stride=10, causal=False)

    def forward(self, x, lengths=None, layers=None) -> AggregatorOutput:
        return AggregatorOutput(output=self.encoder(x).last_hidden_state)


def test_contrastive_loss_equals_hugging_face_pretraining_on_identical_inputs():
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

    torch.manual_seed(5)
    cfg = Wav2Vec2Config(
        hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), conv_bias=False,
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, feat_extract_norm="group",
        num_codevector_groups=2, num_codevectors_per_group=8, codevector_dim=8,
        proj_codevector_dim=12, num_negatives=6, contrastive_logits_temperature=0.1,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        feat_quantizer_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05)
    hf = Wav2Vec2ForPreTraining(cfg).eval()

    masker = SpanMasker(SpanMaskerConfig(mask_prob=0.5, mask_length=3), 24)
    quantizer = GumbelQuantizer(GumbelQuantizer.Config(groups=2, num_vars=8, dim=8), 16)
    model = SpeechModel(HFEncoder(hf), HFAggregator(hf), quantizer=quantizer, masker=masker)
    with torch.no_grad():
        model.projection.load_state_dict(hf.wav2vec2.feature_projection.projection.state_dict())
        masker.mask_emb.copy_(hf.wav2vec2.masked_spec_embed)
    quantizer.load_state_dict(hf.quantizer.state_dict())
    obj = objective_for(model, loss_weights=[0.0, 0.0])
    obj.project_q.load_state_dict(hf.project_q.state_dict())
    obj.final_proj.load_state_dict(hf.project_hid.state_dict())
    model.eval()

    wave = torch.randn(2, 600)
    T = int(hf._get_feat_extract_output_lengths(600))
    mask = masker.sample(2, T)
    np.random.seed(0)
    hf_neg = torch.from_numpy(_sample_negative_indices((2, T), 6, mask.numpy())).long()
    # make some distractors equal their positive (exercises the -inf rule on both sides)
    hf_neg[0, mask[0].nonzero()[0, 0], :2] = int(mask[0].nonzero()[0, 0])

    with torch.no_grad():
        theirs = hf(wave, mask_time_indices=mask, sampled_negative_indices=hf_neg)
        batch = Batch(source=wave, extra={"mask": mask, "neg_idx": negatives_from_hf(hf_neg, mask)})
        ours = obj(batch, model)
    M = int(mask.sum())
    assert ours.sample_size == M
    assert float(ours.stats["contrastive"]) * M == pytest.approx(float(theirs.contrastive_loss),
                                                                 rel=1e-4)


def test_full_stack_loss_equals_hugging_face_with_the_imported_model():
    """The real encoder, Transformer and quantizer, imported from a random HF model."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

    hf_import = pytest.importorskip("w2v.plugins.wav2vec2.interop.hf")
    torch.manual_seed(6)
    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), conv_bias=False,
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, feat_extract_norm="group",
        num_codevector_groups=2, num_codevectors_per_group=8, codevector_dim=8,
        proj_codevector_dim=12, num_negatives=6, hidden_dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, feat_proj_dropout=0.0, feat_quantizer_dropout=0.0,
        final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.05)
    hf = Wav2Vec2ForPreTraining(cfg).eval()
    model = hf_import.from_hf((cfg, hf.state_dict()))
    report = model.load_report
    obj = MaskedContrastiveObjective(
        MaskedContrastiveConfig(contrastive_loss=None, final_dim=12, num_negatives=6),
        model.context_signal().dim, MaskedContrastiveObjective.target_width(model))
    obj.load_state_dict(report.objective_state)
    obj.check_model(model)

    wave = torch.randn(2, 800)
    T = int(hf._get_feat_extract_output_lengths(800))
    mask = model.masker.sample(2, T)
    np.random.seed(1)
    hf_neg = torch.from_numpy(_sample_negative_indices((2, T), 6, mask.numpy())).long()
    with torch.no_grad():
        theirs = hf(wave, mask_time_indices=mask, sampled_negative_indices=hf_neg)
        ours = obj(Batch(source=wave, extra={"mask": mask,
                                             "neg_idx": negatives_from_hf(hf_neg, mask)}), model)
    M = int(mask.sum())
    assert float(ours.stats["contrastive"]) * M == pytest.approx(float(theirs.contrastive_loss),
                                                                 rel=1e-4)


def test_a_batch_without_masked_frames_gives_a_zero_loss():
    model = tiny_model()
    obj = objective_for(model)
    batch = wave_batch()
    batch.extra["mask"] = torch.zeros(3, 39, dtype=torch.bool)
    out = obj(batch, model)
    assert out.sample_size == 0 and float(out.loss.detach()) == 0.0
    out.loss.backward()
