"""Indexed contrastive scores (no ``[M, 1+K, D]`` candidates) equal the materialised definition."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from w2v.plugins.wav2vec2 import contrastive_scores
from w2v.plugins.wav2vec2.contrastive_loss import PMLContrastiveLoss, PMLContrastiveLossConfig
from w2v.plugins.wav2vec2.contrastive_scores import (candidate_logits, indexed_logits,
                                                     rows_equal_at)
from w2v.plugins.wav2vec2.objective import MaskedContrastiveObjective

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_w2v2 import assert_same_step, loss_and_grads, tiny_pretraining, waves  # noqa: E402

torch.set_num_threads(1)


def targets_with_duplicates(M=11, D=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(M, D, generator=g).to(dtype)
    t[4] = t[1]                      # two masked frames with the same code vector
    t[7] = t[2]
    t[7, 0] = -0.0 if float(t[2, 0]) == 0.0 else t[7, 0]
    t[9, 3] = float("nan")           # NaN never equals anything (as ==)
    t[10] = t[9]
    t[5, 2] = 0.0
    t[6] = t[5]
    t[6, 2] = -0.0                   # -0.0 == 0.0
    idx = torch.randint(0, M, (M, 9), generator=g)
    idx[1, 0], idx[4, 3], idx[2, 5], idx[7, 1], idx[10, 2], idx[5, 4], idx[3, 0] = \
        4, 1, 7, 2, 9, 6, 3          # duplicates, NaN rows, and a frame drawn as its own distractor
    return t, idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_rows_equal_at_is_elementwise_equality(dtype):
    t, idx = targets_with_duplicates(dtype=dtype)
    expected = (t[idx] == t[:, None]).all(-1)
    got = rows_equal_at(t, idx)
    assert torch.equal(got, expected)
    assert got[1, 0] and got[4, 3] and got[5, 4] and got[3, 0] and not got[10, 2]


@pytest.mark.parametrize("with_extra", [False, True])
def test_indexed_logits_equal_the_candidate_definition(with_extra, monkeypatch):
    t, idx = targets_with_duplicates()
    t = t.nan_to_num(0.5)
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(t.shape[0], t.shape[1], generator=g)
    extra = torch.randn(t.shape[0], 3, t.shape[1], generator=g) if with_extra else None
    if extra is not None:
        extra[2, 1] = t[2]           # a codebook draw equal to the positive
    parts = [t[:, None], t[idx]] + ([extra] if extra is not None else [])
    want, want_valid = candidate_logits(pred, torch.cat(parts, 1), 0.1)
    got, valid = indexed_logits(pred, t, idx, 0.1, extra)
    assert torch.equal(valid, want_valid) and (~valid).sum() >= 3
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(contrastive_scores, "BLOCK_ELEMENTS", 2 * t.shape[0])   # 2-row blocks
    blocked, _ = indexed_logits(pred, t, idx, 0.1, extra)
    torch.testing.assert_close(blocked, want, rtol=1e-6, atol=1e-6)


class MaterialisedObjective(MaskedContrastiveObjective):
    """The pre-lever objective: builds ``[M, 1+K, D]`` candidates and scores them."""

    def indexed_scores(self, pred, targets, neg_idx, extra_negatives=None):
        parts = [targets[:, None], targets[neg_idx.long()]]
        if extra_negatives is not None:
            parts.append(extra_negatives.to(targets.dtype))
        return self.scores(pred, torch.cat(parts, dim=1))


def both_objectives(**cfg):
    model, fast = tiny_pretraining(**cfg)
    slow = MaterialisedObjective(fast.config, fast.final_proj.in_features,
                                 fast.project_q.in_features, codebook=fast.codebook_sampler)
    slow.load_state_dict(fast.state_dict())
    return model.train(), fast.train(), slow.train()


CONFIGS = [dict(), dict(fairseq_compat=True, cross_sample_negatives=3),
           dict(cross_sample_negatives=2, codebook_negatives=2, target_glu=True),
           dict(logit_temp=0.5)]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_objective_loss_and_gradients_equal_the_materialised_scores(cfg):
    model, fast, slow = both_objectives(**cfg)
    batch = waves(lengths=[1600, 1500, 1200])
    a, b = loss_and_grads(model, fast, batch), loss_and_grads(model, slow, batch)
    assert_same_step(a, b)
    for key in ("accuracy", "contrastive_chance", "contrastive"):
        torch.testing.assert_close(a[0].stats[key], b[0].stats[key])


def test_collapsed_codes_are_excluded_like_the_materialised_scores():
    model, fast, slow = both_objectives()
    model.eval()                     # argmax codes
    with torch.no_grad():            # every code vector equal: every target equal
        model.quantizer.codevectors.fill_(0.25)
    a, b = loss_and_grads(model, fast, waves()), loss_and_grads(model, slow, waves())
    assert_same_step(a, b)
    assert float(a[0].stats["contrastive_chance"]) == 0.0     # only the positive is valid


def test_pml_loss_sees_the_same_candidates():
    model, fast, slow = both_objectives()
    pml = PMLContrastiveLoss.from_config(
        PMLContrastiveLossConfig(loss="NTXentLoss", kwargs={"temperature": 0.1}, chunk_size=8))
    fast.contrastive_loss, slow.contrastive_loss = pml, pml
    assert_same_step(loss_and_grads(model, fast, waves()), loss_and_grads(model, slow, waves()))
