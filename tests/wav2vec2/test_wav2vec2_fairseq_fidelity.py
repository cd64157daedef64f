"""wav2vec 2.0 against fairseq 0.12 (models/wav2vec/wav2vec2.py) where w2v's default differs:
the feature penalty on padded batches and cross-sample negatives, each under both settings."""

from __future__ import annotations

import pytest
import torch

from w2v.config.structure import structure_component
from w2v.interfaces import waveform_signal
from w2v.plugins.wav2vec2.feature_encoder import (Wav2Vec2FeatureEncoder,
                                                   Wav2Vec2FeatureEncoderConfig)
from w2v.plugins.wav2vec2.negatives import fairseq_negative_indices, sample_negative_indices

torch.set_num_threads(1)

SMALL = [(16, 10, 5), (16, 3, 2), (24, 2, 2)]          # stride 20, receptive field 30


# ------------------------------------------------------------- feature penalty


def conv_output(enc, x):
    h = x.unsqueeze(1)
    for block in enc.conv_layers:
        h = block(h)
    return h.transpose(1, 2)                                   # [B, T, C] before the LayerNorm


@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_padded_penalty_valid_frames_by_default_every_frame_under_compat(mode):
    lengths = torch.tensor([1600, 1600, 1200])                 # 16000/16000/12000 scaled down
    torch.manual_seed(0)
    x = torch.randn(3, 1600)
    x[2, 1200:] = 0.0                                          # fairseq's collater pads with 0
    penalties = {}
    for compat in (False, True):
        torch.manual_seed(0)
        cfg = Wav2Vec2FeatureEncoderConfig(conv_layers=SMALL, mode=mode, fairseq_compat=compat)
        enc = Wav2Vec2FeatureEncoder.from_config(cfg, waveform_signal()).eval()
        out = enc(x, lengths)
        conv = conv_output(enc, x)                             # the whole padded batch
        if compat:                                             # fairseq features.pow(2).mean()
            torch.testing.assert_close(out.penalty, conv.float().pow(2).mean())
        else:
            valid = torch.arange(conv.shape[1])[None, :] < out.lengths[:, None]
            torch.testing.assert_close(out.penalty, conv[valid].pow(2).mean())
        penalties[compat] = float(out.penalty.detach())
    assert abs(penalties[True] - penalties[False]) / penalties[False] > 1e-3


# -------------------------------------------------------- cross-sample negatives


def fairseq_sample_negatives(bsz, num, n_neg, n_cross):
    """fairseq Wav2Vec2Model.sample_negatives as indices [B*num, K] into y.view(B*num, C)."""
    high = num
    if n_neg > 0:
        tszs = torch.arange(num).unsqueeze(-1).expand(-1, n_neg).flatten()
        neg_idxs = torch.randint(low=0, high=high - 1, size=(bsz, n_neg * num))
        neg_idxs[neg_idxs >= tszs] += 1
    if n_cross > 0:
        tszs = torch.arange(num).unsqueeze(-1).expand(-1, n_cross).flatten()
        cross_neg_idxs = torch.randint(low=0, high=bsz * num - 1, size=(bsz, n_cross * num))
        cross_neg_idxs[cross_neg_idxs >= tszs] += 1
    if n_neg > 0:
        neg_idxs = neg_idxs + (torch.arange(bsz).unsqueeze(1) * high)
    else:
        neg_idxs = cross_neg_idxs
    if n_cross > 0 and n_neg > 0:
        neg_idxs = torch.cat([neg_idxs, cross_neg_idxs], dim=1)
    # fairseq: y[neg_idxs.view(-1)].view(bsz, num, K, C): row b*num + t holds K indices
    return neg_idxs.view(bsz * num, n_neg + n_cross)


@pytest.mark.parametrize("bsz, num, n_neg, n_cross", [(3, 40, 0, 25), (3, 40, 25, 25),
                                                      (2, 30, 10, 0), (4, 12, 5, 3)])
def test_compat_sampler_equals_fairseq_after_the_same_seed(bsz, num, n_neg, n_cross):
    counts = torch.full((bsz,), num)
    torch.manual_seed(7)
    want = fairseq_sample_negatives(bsz, num, n_neg, n_cross)
    torch.manual_seed(7)
    got = fairseq_negative_indices(counts, n_neg, n_cross)
    assert torch.equal(got, want)


def positive_rate(idx, num_rows):
    return (idx == torch.arange(num_rows)[:, None]).float().mean().item()


def test_fairseq_cross_sample_draws_hit_the_positive_and_w2vs_never_do():
    torch.manual_seed(0)
    counts = torch.full((3, ), 200)
    compat = fairseq_negative_indices(counts, 0, 25)
    fixed = sample_negative_indices(counts, 0, 25)
    assert positive_rate(fixed, 600) == 0.0
    # rows b > 0: local exclusion leaves the positive b*N + t at probability 1/(B*N - 1)
    assert 0 < positive_rate(compat, 600) < 5 / 599
    # both kinds on: the read-back gives targets draws made for other targets (B = 3, 25 of
    # each, 20 masked frames per utterance): about 3 % of the distractors are the positive
    small = torch.full((3,), 20)
    both = torch.cat([fairseq_negative_indices(small, 25, 25) for _ in range(50)])
    rate = (both == torch.arange(60).repeat(50)[:, None]).float().mean().item()
    assert 0.025 < rate < 0.045
    assert positive_rate(sample_negative_indices(small, 25, 25), 60) == 0.0


def test_compat_sampler_needs_equal_counts():
    with pytest.raises(ValueError, match="same number of masked frames"):
        fairseq_negative_indices(torch.tensor([5, 6]), 3, 0)


def test_objective_option_and_inheritance():
    spec = structure_component("objective", {"name": "masked_contrastive"}, path="objective",
                               inherited={"fairseq_compat": True})
    assert spec.config.fairseq_compat is True
    spec = structure_component("objective", {"name": "masked_contrastive"}, path="objective")
    assert spec.config.fairseq_compat is False
