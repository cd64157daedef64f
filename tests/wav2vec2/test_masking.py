"""Span masking against a slow reference of fairseq's ``compute_mask_indices`` (static)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from w2v.interfaces import Signal
from w2v.plugins.wav2vec2.masking import (Masker, SpanMasker, SpanMaskerConfig,
                                          sample_span_mask)

torch.set_num_threads(1)


def reference_mask(lengths, width, prob, length, min_masks, require_same, rng):
    """fairseq static span masking, one utterance at a time (written from the spec)."""
    chosen = []
    for sz in lengths:
        num = max(min_masks, int(prob * sz / length + rng.random()))
        min_len = length
        if sz - min_len <= num:
            min_len = sz - num - 1
        starts = rng.choice(sz - min_len, num, replace=False)
        idx = np.asarray([s + o for s in starts for o in range(length)])
        chosen.append(np.unique(idx[idx < sz]))
    target = min(len(c) for c in chosen)
    mask = np.zeros((len(lengths), width), dtype=bool)
    for b, idx in enumerate(chosen):
        if require_same and len(idx) > target:
            idx = rng.choice(idx, target, replace=False)
        mask[b, idx] = True
    return mask


def runs(row: np.ndarray) -> int:
    """Number of maximal runs of masked steps."""
    r = row.astype(int)
    return int(((r[1:] == 1) & (r[:-1] == 0)).sum() + r[0])


KW = dict(prob=0.65, length=10, min_masks=2)


def draw_ours(lengths, width, n, require_same, seed=0, **kw):
    torch.manual_seed(seed)
    if not require_same:   # rows are independent: one big batch
        lens = torch.tensor(list(lengths) * n)
        m = sample_span_mask(len(lens), width, lens, require_same=False, **kw)
        return m.view(n, len(lengths), width).numpy()
    lens = torch.tensor(lengths)
    return np.stack([sample_span_mask(len(lengths), width, lens, require_same=True, **kw).numpy()
                     for _ in range(n)])


def draw_reference(lengths, width, n, require_same, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return np.stack([reference_mask(lengths, width, kw["prob"], kw["length"], kw["min_masks"],
                                    require_same, rng) for _ in range(n)])


def close_means(a: np.ndarray, b: np.ndarray, sigmas: float = 4.0) -> bool:
    se = np.sqrt(a.var() / len(a) + b.var() / len(b)) + 1e-9
    return abs(a.mean() - b.mean()) <= sigmas * se


@pytest.mark.parametrize("lengths", [(80, 60, 35), (24, 13, 80)])
def test_independent_rows_match_the_reference_distribution(lengths):
    n, width = 1500, 80
    ours = draw_ours(lengths, width, n, False, **KW)
    ref = draw_reference(lengths, width, n, False, **KW)
    for b, sz in enumerate(lengths):
        co, cr = ours[:, b].sum(-1), ref[:, b].sum(-1)
        assert close_means(co, cr), (sz, co.mean(), cr.mean())
        qs = [1, 5, 50, 95, 99]
        assert np.abs(np.percentile(co, qs) - np.percentile(cr, qs)).max() <= 2
        assert co.min() >= min(sz, 11) and co.max() <= sz      # two spans at least, inside
        ro = np.array([runs(r) for r in ours[:, b]])
        rr = np.array([runs(r) for r in ref[:, b]])
        assert close_means(ro, rr), (sz, ro.mean(), rr.mean())
        # where in the utterance masks fall (edges are masked less: starts < T - length)
        po, pr = ours[:, b, :sz].mean(0), ref[:, b, :sz].mean(0)
        assert np.abs(po - pr).max() < 0.07, (sz, np.abs(po - pr).max())
        assert not ours[:, b, sz:].any()


def test_same_count_batches_match_the_reference_distribution():
    lengths, width, n = (70, 50, 30), 70, 400
    ours = draw_ours(lengths, width, n, True, **KW)
    ref = draw_reference(lengths, width, n, True, **KW)
    co, cr = ours.sum(-1), ref.sum(-1)
    assert (co == co[:, :1]).all()                      # equal counts in every batch
    assert close_means(co[:, 0], cr[:, 0])
    po, pr = ours[:, 0].mean(0), ref[:, 0].mean(0)
    assert np.abs(po - pr).max() < 0.12


def test_invariants_min_masks_and_valid_lengths():
    torch.manual_seed(3)
    lens = torch.tensor([100, 57, 23, 12, 100, 40])
    for _ in range(50):
        m = sample_span_mask(6, 100, lens, prob=0.01, length=10, min_masks=2, require_same=False)
        counts = m.sum(1)
        # two distinct spans that fit inside the utterance: at least length + 1 frames
        assert (counts[lens >= 12] >= 11).all() and (counts <= 20).all()
        pad = torch.arange(100)[None] >= lens[:, None]
        assert not (m & pad).any()


def test_masks_are_reproducible_from_the_global_seed_and_vary_otherwise():
    lens = torch.tensor([50, 40])
    torch.manual_seed(5)
    a = sample_span_mask(2, 50, lens, **KW)
    torch.manual_seed(5)
    b = sample_span_mask(2, 50, lens, **KW)
    c = sample_span_mask(2, 50, lens, **KW)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(1)
    d = sample_span_mask(2, 50, lens, generator=g, **KW)
    g.manual_seed(1)
    assert torch.equal(d, sample_span_mask(2, 50, lens, generator=g, **KW))


def test_mask_dropout_unmasks_the_rounded_fraction():
    torch.manual_seed(6)
    full = torch.tensor([60, 60, 60])
    torch.manual_seed(6)
    before = sample_span_mask(3, 60, full, dropout=0.0, **KW)
    torch.manual_seed(6)
    after = sample_span_mask(3, 60, full, dropout=0.3, **KW)
    expected = before.sum(1) - torch.round(before.sum(1).double() * 0.3).long()
    assert torch.equal(after.sum(1), expected)
    assert not (after & ~before).any()                 # only unmasking


def test_no_overlap_keeps_spans_apart():
    torch.manual_seed(7)
    for _ in range(30):
        m = sample_span_mask(4, 60, None, prob=0.5, length=5, min_masks=2, no_overlap=True,
                             min_space=2, require_same=False).numpy()
        for row in m:
            edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
            starts, ends = edges[::2], edges[1::2]
            assert ((ends - starts) == 5).all()        # whole, separate spans
            assert ((starts[1:] - ends[:-1]) >= 2).all()
            assert len(starts) >= 2


@pytest.mark.parametrize("selection", ["uniform", "normal", "poisson"])
def test_other_span_length_selections(selection):
    torch.manual_seed(8)
    m = sample_span_mask(200, 100, None, prob=0.2, length=6, selection=selection, other=2.0,
                         min_masks=1, require_same=False)
    counts = m.sum(1).double()
    # ~ 0.2 * 100 / 6 spans of mean length ~6 (uniform: mean (2 + 12) / 2 = 7), minus overlaps
    assert 8 < counts.mean() < 25
    assert m.any(1).all()


def test_span_masker_applies_the_embedding_and_channel_masks():
    torch.manual_seed(9)
    cfg = SpanMaskerConfig(mask_prob=0.5, mask_length=3, mask_channel_prob=0.5,
                           mask_channel_length=2)
    masker = SpanMasker.from_config(cfg, Signal(kind="frames", dim=8))
    assert isinstance(masker, Masker) and masker.kind == "masker"
    assert masker.mask_emb.shape == (8,) and (0 <= masker.mask_emb).all()
    x = torch.randn(2, 20, 8)
    lengths = torch.tensor([20, 14])
    mask = masker.sample(2, 20, lengths)
    chan = masker.sample_channels(2)
    assert chan.shape == (2, 8) and (chan.sum(1) == chan.sum(1)[0]).all()
    assert chan.any() and (~chan).any() and mask.any()
    out = masker.apply(x, mask, chan)
    keep = ~mask[..., None] & ~chan[:, None, :]
    assert torch.equal(out[keep], x.expand_as(out)[keep])
    # channel masking after the time mask zeroes masked channels everywhere
    assert (out.permute(0, 2, 1)[chan] == 0).all()
    assert torch.equal(out[0][mask[0]][:, ~chan[0]],
                       masker.mask_emb[~chan[0]].expand(int(mask[0].sum()), -1))
    # channel masking before: masked frames carry the full embedding
    masker.config = SpanMaskerConfig(mask_prob=0.5, mask_length=3, mask_channel_prob=0.5,
                                     mask_channel_length=2, mask_channel_before=True)
    out = masker.apply(x, mask, chan)
    assert torch.equal(out[mask], masker.mask_emb.expand(int(mask.sum()), -1))


def test_masker_forward_returns_the_mask_and_trains_the_embedding():
    torch.manual_seed(10)
    masker = SpanMasker(SpanMaskerConfig(mask_prob=0.5, mask_length=2), 6)
    x = torch.randn(3, 12, 6)
    out, mask = masker(x, torch.tensor([12, 9, 12]))
    assert mask.dtype == torch.bool and mask.any()
    out.sum().backward()
    assert masker.mask_emb.grad is not None
    assert torch.allclose(masker.mask_emb.grad, torch.full((6,), float(mask.sum())))
    given = torch.zeros(3, 12, dtype=torch.bool)
    given[:, 2] = True
    out, back = masker(x, mask=given)
    assert back is given
    assert torch.equal(out[:, 2], masker.mask_emb.detach().expand(3, -1))
    assert torch.equal(out[:, 3:], x[:, 3:])


def test_zero_probability_and_empty_shapes():
    assert not sample_span_mask(2, 10, None, prob=0.0, length=3).any()
    assert sample_span_mask(0, 10, None, prob=0.5, length=3).shape == (0, 10)
    assert sample_span_mask(2, 0, None, prob=0.5, length=3).shape == (2, 0)
