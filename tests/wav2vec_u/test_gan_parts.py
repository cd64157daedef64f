"""wav2vec-U GAN parts against hand-computed values on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from w2v.data.dictionary import Dictionary
from w2v.plugins.wav2vec_u.discriminator import Discriminator, DiscriminatorConfig
from w2v.plugins.wav2vec_u.generator import GeneratorConfig, PhoneGenerator
from w2v.plugins.wav2vec_u.objective import AdversarialConfig, AdversarialObjective
from w2v.plugins.wav2vec_u.penalties import (code_penalty, gradient_penalty, perplexities,
                                             smoothness_penalty)
from w2v.plugins.wav2vec_u.segmentation import join_segments
from w2v.plugins.wav2vec_u.selection import (phone_error_rate, viterbi_phones,
                                             weighted_lm_perplexity)


def _logits_for(preds: list[list[int]], v: int, t: int) -> torch.Tensor:
    """Logits whose argmax is ``preds`` (padded rows with -1 get random logits)."""
    out = torch.randn(len(preds), t, v)
    for b, row in enumerate(preds):
        for i, p in enumerate(row):
            out[b, i, p] += 10.0
    return out


def test_join_averages_runs_in_evaluation_and_ignores_padding():
    logits = _logits_for([[1, 1, 2, 2, 2, 1], [3, 3, 0, 0, 0, 0]], v=4, t=6)
    lengths = torch.tensor([6, 3])
    out, n = join_segments(logits, lengths, random_frame=False)
    assert n.tolist() == [3, 2]
    assert out.shape == (2, 3, 4)
    torch.testing.assert_close(out[0, 0], logits[0, 0:2].mean(0))
    torch.testing.assert_close(out[0, 1], logits[0, 2:5].mean(0))
    torch.testing.assert_close(out[0, 2], logits[0, 5])
    torch.testing.assert_close(out[1, 0], logits[1, 0:2].mean(0))
    torch.testing.assert_close(out[1, 1], logits[1, 2])   # frames 3.. are padding
    assert torch.all(out[1, 2] == 0)


def test_join_in_training_keeps_one_frame_of_each_run_uniformly():
    logits = _logits_for([[1, 1, 1, 1, 2]], v=3, t=5)
    seen = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        out, n = join_segments(logits, torch.tensor([5]), random_frame=True, generator=gen)
        assert n.tolist() == [2]
        frame = [i for i in range(4) if torch.equal(out[0, 0], logits[0, i])]
        assert len(frame) == 1
        seen.add(frame[0])
        assert torch.equal(out[0, 1], logits[0, 4])
    assert seen == {0, 1, 2, 3}


def test_join_random_frame_passes_gradient_to_one_frame_per_run():
    logits = _logits_for([[1, 1, 2]], v=3, t=3).requires_grad_(True)
    out, _ = join_segments(logits, torch.tensor([3]), random_frame=True)
    out.sum().backward()
    touched = (logits.grad.abs().sum(-1) > 0).squeeze(0).tolist()
    assert touched[2] and sum(touched[:2]) == 1


def test_code_penalty_is_zero_for_uniform_use_and_near_one_for_collapse():
    v = 8
    uniform = torch.zeros(2, 5, v)
    _, ppl = perplexities(uniform, None)
    assert code_penalty(ppl, v).item() == pytest.approx(0.0, abs=1e-5)
    collapsed = torch.full((2, 5, v), -50.0)
    collapsed[..., 3] = 50.0
    _, ppl = perplexities(collapsed, None)
    assert code_penalty(ppl, v).item() == pytest.approx((v - 1) / v, abs=1e-4)


def test_prob_perplexity_counts_padded_segments_only_in_fairseq_mode():
    v = 4
    logits = torch.full((1, 4, v), -50.0)
    logits[0, :2, 1] = 50.0
    lengths = torch.tensor([2])
    _, valid = perplexities(logits, lengths, valid_only=True)
    assert valid.item() == pytest.approx(1.0, abs=1e-3)
    logits[0, 2:] = 0.0                           # fairseq's padded segments: zero logits
    _, padded = perplexities(logits, lengths, valid_only=False)
    # mean of two one-hot rows and two uniform rows: p = (5/8, 1/8, 1/8, 1/8)
    p = torch.tensor([5 / 8, 1 / 8, 1 / 8, 1 / 8])
    assert padded.item() == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-4)


def test_smoothness_is_the_mean_squared_step_with_padded_pairs_zeroed():
    logits = torch.tensor([[[0.0, 0.0], [1.0, 2.0], [1.0, 0.0]]])
    # squared diffs: (1, 4) and (0, 4) -> mean over 4 elements = 9 / 4
    assert smoothness_penalty(logits, None).item() == pytest.approx(9 / 4)
    # with length 2 the second pair's target is padding: only (1, 4) count, over 4 elements
    assert smoothness_penalty(logits, torch.tensor([2])).item() == pytest.approx(5 / 4)


class _Linear(nn.Module):
    """D(x) = mean over frames of w . x_t: its input gradient is w / T at every frame."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x, lengths=None):
        return (x @ self.w).mean(1)


def test_gradient_penalty_matches_the_closed_form_of_a_linear_discriminator():
    w = torch.tensor([3.0, -1.0, 0.5])
    disc = _Linear(w)
    real = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2, 1]]), 3).float()
    fake = torch.rand(2, 6, 3).softmax(-1)
    gp = gradient_penalty(disc, real, fake)
    t = 4                                     # cut to the common length
    expected = ((w.abs() / math.sqrt(t) - 1) ** 2).sum()   # one utterance (min batch)
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)
    gp.backward()
    assert disc.w.grad is not None            # create_graph: the penalty trains D


def test_discriminator_is_causal_and_its_mean_ignores_padding():
    torch.manual_seed(0)
    disc = Discriminator(DiscriminatorConfig(dim=8, depth=2, kernel=3), vocab_size=5).eval()
    x = torch.rand(1, 7, 5)
    y = x.clone()
    y[0, 5:] = torch.rand(2, 5)               # change the future only
    a = disc.net(x.transpose(1, 2))
    b = disc.net(y.transpose(1, 2))
    assert a.shape[-1] == 7
    torch.testing.assert_close(a[..., :5], b[..., :5])
    assert not torch.allclose(a[..., 5:], b[..., 5:])
    padded = torch.cat([x[:, :5], torch.rand(1, 3, 5)], 1)
    torch.testing.assert_close(disc(padded, torch.tensor([5])), disc(x[:, :5], None))


def _fairseq_valid_frames(t: int, length: int, kernel: int, stride: int) -> int:
    """fairseq Generator's padding-mask rule, written out literally."""
    mask = torch.arange(t) >= length
    out_t = (t + 2 * (kernel // 2) - (kernel - 1) - 1) // stride + 1
    mask = mask[::stride]
    if mask.numel() != out_t:
        new = torch.zeros(out_t, dtype=torch.bool)
        diff = out_t - mask.numel()
        if diff > 0:
            new[diff:] = mask
        else:
            new = mask[:diff]
        mask = new
    return int((~mask).sum())


@pytest.mark.parametrize("kernel,stride", [(4, 1), (9, 3), (3, 1), (5, 2)])
def test_generator_output_lengths_follow_fairseq(kernel, stride):
    gen = PhoneGenerator(GeneratorConfig(kernel=kernel, stride=stride), input_dim=6,
                         vocab_size=5)
    t = 23
    x = torch.randn(3, t, 6)
    lengths = torch.tensor([23, 17, 4])
    out = gen(x, lengths)
    got = gen.output_lengths(lengths, t)
    assert out.shape[1] == (t + 2 * (kernel // 2) - kernel) // stride + 1
    assert got.tolist() == [_fairseq_valid_frames(t, n, kernel, stride) for n in lengths.tolist()]


def test_generator_batch_norm_sees_only_valid_frames():
    gen = PhoneGenerator(GeneratorConfig(batch_norm=30.0, residual=True, dropout=0.0),
                         input_dim=4, vocab_size=3)
    assert torch.all(gen.norm.weight == 30.0)
    x = torch.randn(2, 6, 4)
    lengths = torch.tensor([6, 3])
    a = gen(x, lengths)
    x2 = x.clone()
    x2[1, 3:] = 1e3                           # garbage in padding
    b = gen(x2, lengths)
    torch.testing.assert_close(a[0], b[0])
    assert gen.last_residual is not None and gen.last_residual.shape == x.shape


def _objective(**kw) -> AdversarialObjective:
    cfg = AdversarialConfig(discriminator=DiscriminatorConfig(dim=8, depth=2, kernel=3), **kw)
    return AdversarialObjective(cfg, vocab_size=6, input_dim=4)


def test_objective_alternates_and_the_discriminator_step_leaves_the_generator_alone():
    torch.manual_seed(0)
    obj = _objective()
    assert [obj.group_for_step(s) for s in range(4)] == ["generator", "discriminator"] * 2
    logits = torch.randn(2, 9, 6, requires_grad=True)
    text = torch.tensor([[4, 5, 4, 1], [5, 4, 1, 1]])
    d = obj.score(logits, torch.tensor([9, 7]), text, torch.tensor([4, 2]), step=1)
    assert d.group == "discriminator" and d.sample_size == 2
    assert {"dense_d", "token_d", "grad_pen"} <= set(d.stats)
    d.loss.backward()
    assert logits.grad is None
    assert all(p.grad is not None for p in obj.discriminator.parameters())
    g = obj.score(logits, torch.tensor([9, 7]), text, torch.tensor([4, 2]), step=2)
    assert g.group == "generator" and {"dense_g", "code_pen", "smoothness"} <= set(g.stats)
    g.loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_objective_v2_auxiliary_loss_reads_every_second_target():
    obj = _objective(mmi_weight=0.5, target_dim=3)
    residual = torch.randn(2, 8, 4)
    targets = torch.tensor([[0, 9, 1, 9, 2, 9, 0, 9], [1, 9, 1, 9, -1, 9, -1, 9]])
    expected = torch.nn.functional.cross_entropy(
        obj.aux_decoder(residual[:, :4]).transpose(1, 2), targets[:, ::2], ignore_index=-1,
        reduction="none").mean()
    torch.testing.assert_close(obj._auxiliary(residual, targets), expected)
    g = obj.score(torch.randn(2, 8, 6), None, torch.tensor([[4, 5]]), torch.tensor([2]), step=0,
                  residual=residual, aux_targets=targets)
    assert g.stats["mmi"].item() == pytest.approx(expected.item() * 2 * 0.5, rel=1e-5)


def _phone_dictionary() -> Dictionary:
    return Dictionary.from_symbols(["<SIL>", "a", "b", "c", "d"])


def test_viterbi_merges_repeats_and_drops_silence_and_specials():
    d = _phone_dictionary()
    ids = [d.index(p) for p in ["a", "a", "<SIL>", "b", "b", "a"]] + [0]
    logits = _logits_for([ids], v=len(d), t=7)
    assert viterbi_phones(logits, torch.tensor([6]), d) == \
        [[d.index("a"), d.index("b"), d.index("a")]]


def test_selection_prefers_a_faithful_generator_to_a_collapsed_or_random_one():
    from w2v.plugins.ctc.lm import train_kneser_ney

    rng = torch.Generator().manual_seed(0)
    grammar = [["a", "b", "c"], ["b", "c", "d"], ["c", "d", "a"], ["d", "a", "b"]]
    text = [" ".join(grammar[int(i)]) for i in torch.randint(0, 4, (200,), generator=rng)]
    lm = train_kneser_ney(text, order=4)
    refs = [grammar[int(i)] for i in torch.randint(0, 4, (50,), generator=rng)]
    perfect = weighted_lm_perplexity(refs, lm.score, inventory=4)
    collapsed = weighted_lm_perplexity([["a"] for _ in refs], lm.score, inventory=4)
    phones = ["a", "b", "c", "d"]
    random = weighted_lm_perplexity(
        [[phones[int(i)] for i in torch.randint(0, 4, (3,), generator=rng)] for _ in refs],
        lm.score, inventory=4)
    assert perfect.vocab_usage == 1.0 and collapsed.vocab_usage == 0.25
    assert perfect.weighted_lm_ppl < random.weighted_lm_ppl < collapsed.weighted_lm_ppl
    assert phone_error_rate(refs, refs) == 0.0
    # "a" against a reference with an "a": 2 deletions; without one: 1 substitution + 2 deletions
    edits = sum(2 if "a" in r else 3 for r in refs)
    assert phone_error_rate([["a"] for _ in refs], refs) == pytest.approx(100 * edits / 150)


def test_silence_insertion_rate_and_surround():
    from w2v.plugins.wav2vec_u.text import SILENCE, phonemise_with_silence

    lexicon = {"A": ["a"], "B": ["b", "c"]}
    words = [["A", "B", "A", "B", "A"]] * 2000
    text = phonemise_with_silence(words, lexicon, sil_prob=0.25, seed=3)
    inner = [s[1:-1] for s in text.sentences]
    assert all(s[0] == SILENCE and s[-1] == SILENCE for s in text.sentences)
    rate = sum(p.count(SILENCE) for p in inner) / (4 * len(inner))
    assert rate == pytest.approx(0.25, abs=0.015)
    assert phonemise_with_silence(words, lexicon, sil_prob=0.25, seed=3).sentences == \
        text.sentences
    # a silence only ever follows a whole word
    for s in inner:
        for i, p in enumerate(s):
            if p == SILENCE:
                assert s[i - 1] in ("a", "c")
    none = phonemise_with_silence([["A", "C"], ["B"]], lexicon, sil_prob=0.0, surround=False)
    assert none.sentences == [["b", "c"]] and none.left_out == 1


def test_phone_dictionary_keeps_frequent_phones_and_appends_silence():
    from w2v.plugins.wav2vec_u.text import phone_dictionary, filter_lexicon, normalise

    lexicon = {"A": ["a"], "B": ["b", "x"]}
    d = phone_dictionary(lexicon, [["A", "A", "B"], ["A"]], min_count=2)
    assert d.symbols[d.nspecial:] == ["a", "<SIL>"]
    assert filter_lexicon(lexicon, d) == {"A": ["a"]}
    assert normalise("  Hello, world!  it's 3 ") == "HELLO WORLD IT'S 3"
