"""wav2vec 1.0 against fairseq 0.12 (models/wav2vec/wav2vec.py): the prediction head's
parameterisation and init, the compatibility sampler's random stream, the GRU recurrence."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from w2v.plugins.wav2vec.gru import GRUAggregator
from w2v.plugins.wav2vec.negatives import fairseq_negatives
from w2v.plugins.wav2vec.prediction import StepPredictionHead
from w2v.train.checkpoint import load_partial

torch.set_num_threads(1)


# ------------------------------------------------------------ prediction head


def test_head_is_one_transposed_conv_with_one_shared_bias_and_its_default_init():
    torch.manual_seed(0)
    head = StepPredictionHead(512, 512, 12)
    assert head.weight.shape == (12, 512, 512) and head.bias.shape == (512,)
    bound = 1 / math.sqrt(512 * 12)                  # ConvTranspose2d's fan_in: D_z * K
    assert head.weight.abs().max() <= bound and head.bias.abs().max() <= bound
    assert head.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.01)  # 0.0074
    assert head.weight.std().item() == pytest.approx(0.00737, abs=5e-5)


def test_head_equals_fairseq_layer_drawn_from_the_same_seed():
    torch.manual_seed(3)
    conv = nn.ConvTranspose2d(6, 5, (1, 4))                        # fairseq project_to_steps
    torch.manual_seed(3)
    head = StepPredictionHead(6, 5, 4)
    assert torch.equal(head.weight, conv.weight[:, :, 0, :].permute(2, 0, 1))
    assert torch.equal(head.bias, conv.bias)
    c = torch.randn(2, 7, 6)                                       # [B, T, D_ctx]
    with torch.no_grad():
        ref = conv(c.transpose(1, 2)[..., None])                  # [B, D_z, T, K]
        torch.testing.assert_close(head(c), ref.permute(0, 2, 3, 1))


def test_a_checkpoint_with_one_bias_per_step_does_not_load_silently():
    head = StepPredictionHead(4, 3, 5)
    old = {"weight": torch.randn(5, 4, 3), "bias": torch.randn(5, 3)}   # written before the change
    report = load_partial(head, old, prefix="objective.head.")
    assert report.mismatched == ("objective.head.bias",) and not report.complete
    assert report.loaded == ("objective.head.weight",)


# ---------------------------------------------------- compatibility sampler


def fairseq_sample_negatives(bsz, tsz, n_neg, n_cross, sample_distance=None):
    """fairseq Wav2VecPredictionsModel.sample_negatives as indices [B, T, N + Nc] into the
    flat B*T frames (its reshape to N x B x C x T read back per target)."""
    high = tsz if sample_distance is None else min(tsz, sample_distance)
    neg_idxs = torch.randint(low=0, high=high, size=(bsz, n_neg * tsz))       # never used
    if n_neg > 0:
        tszs = torch.arange(tsz).unsqueeze(-1).expand(-1, n_neg).flatten()
        neg_idxs = torch.randint(low=0, high=high - 1, size=(bsz, n_neg * tsz))
        neg_idxs[neg_idxs >= tszs] += 1
    if n_cross > 0:
        tszs = torch.arange(tsz).unsqueeze(-1).expand(-1, n_cross).flatten()
        cross = torch.randint(low=0, high=bsz * tsz - 1, size=(bsz, n_cross * tsz))
        cross[cross >= tszs] += 1
    if n_neg > 0:
        for i in range(1, bsz):
            neg_idxs[i] += i * high
    else:
        neg_idxs = cross
    if n_cross > 0 and n_neg > 0:
        neg_idxs = torch.cat([neg_idxs, cross], dim=1)
    # fairseq: y[..., idx.view(-1)].view(C, B, N + Nc, T): per (b, t), copy n is idx[b, n*T + t]
    return neg_idxs.view(bsz, n_neg + n_cross, tsz).transpose(1, 2)


@pytest.mark.parametrize("bsz, tsz, n_neg, n_cross, distance", [
    (3, 20, 10, 0, None), (2, 15, 4, 3, None), (2, 9, 0, 5, None), (3, 30, 6, 0, 8)])
def test_compat_sampler_first_draw_equals_fairseq_after_the_same_seed(bsz, tsz, n_neg, n_cross,
                                                                      distance):
    torch.manual_seed(1234)
    want = fairseq_sample_negatives(bsz, tsz, n_neg, n_cross, distance)
    after_fairseq = torch.rand(3)
    torch.manual_seed(1234)
    got = fairseq_negatives(bsz, tsz, n_neg, n_cross, sample_distance=distance)
    assert torch.equal(got, want)
    assert torch.equal(torch.rand(3), after_fairseq)               # the stream continues alike


# ------------------------------------------------------------------- GRU


def test_gru_compat_recurs_across_the_batch_axis_as_fairseq():
    torch.manual_seed(0)
    fairseq_gru = nn.GRU(input_size=6, hidden_size=5, num_layers=1)   # not batch_first
    ours = GRUAggregator(GRUAggregator.Config(dim=5, fairseq_compat=True), 6)
    default = GRUAggregator(GRUAggregator.Config(dim=5), 6)
    ours.layers[0].load_state_dict(fairseq_gru.state_dict())
    default.layers[0].load_state_dict(fairseq_gru.state_dict())
    x = torch.randn(3, 7, 6)                                        # [B, T, C]
    with torch.no_grad():
        want = fairseq_gru(x)[0]                                    # fairseq: x is [B, T, C]
        got = ours(x).output
        over_time = default(x).output
    torch.testing.assert_close(got, want)
    # frame t of utterance 0 sees only itself: equal to the recurrence's first step at t
    torch.testing.assert_close(got[0], fairseq_gru(x[:1])[0][0])
    assert (over_time - want).abs().max() > 1e-2
    # utterance 1 depends on utterance 0 under compat, never by default
    y = x.clone()
    y[0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(ours(y).output[1], got[1])
        torch.testing.assert_close(default(y).output[1], over_time[1])
