"""The Kneser-Ney ARPA writer against KenLM and against a brute-force scorer written
here from the formulas, plus lexicon building and the LM text checks."""

from __future__ import annotations

import collections
import math

import pytest

from w2v.data.dictionary import Dictionary
from w2v.errors import DataError
from w2v.plugins.ctc.lexicon import build_lexicon
from w2v.plugins.ctc.lm import (arpa_vocabulary, build_arpa, check_disjoint, oov_rate,
                                train_kneser_ney)

kenlm = pytest.importorskip("kenlm")

SUBJECTS = ["the cat", "a dog", "the dog", "my cat", "a bird", "the old man", "she"]
VERBS = ["sat on", "ran to", "looked at", "jumped over", "slept near", "saw"]
OBJECTS = ["the mat", "a tree", "the house", "my bed", "the dog", "a cat", "the river"]


def corpus(n: int, seed: int) -> list[str]:
    """Sentences of a tiny grammar: enough n-gram variety for every count-of-count."""
    import random

    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
            + (" again" if rng.random() < 0.2 else "") for _ in range(n)]


def zipf_corpus(n: int, seed: int) -> list[str]:
    """Sentences of 2-6 words drawn from a Zipf distribution over 40 words."""
    import random

    rng = random.Random(seed)
    words = [f"w{i}" for i in range(40)]
    weights = [1 / (i + 1) for i in range(40)]
    return [" ".join(rng.choices(words, weights, k=rng.randint(2, 6))) for _ in range(n)]


class BruteForceKN:
    """Interpolated modified Kneser-Ney computed straight from the text for each query.

    Written independently of w2v.plugins.ctc.lm from the definitions: adjusted count of
    an n-gram = its raw count at the highest order or after <s>, else the number of
    distinct words seen before it; per order, D1..D3+ from counts-of-counts (fallback
    0.5/1/1.5); unigrams interpolate with the uniform distribution.
    """

    def __init__(self, sentences, order):
        self.order = order
        self.sents = [["<s>"] + s.split() + ["</s>"] for s in sentences]
        self.vocab = sorted({w for s in self.sents for w in s[1:]} | {"<unk>"})
        self.grams = [collections.Counter() for _ in range(order + 1)]
        for s in self.sents:
            for n in range(1, order + 1):
                for i in range(len(s) - n + 1):
                    self.grams[n][tuple(s[i:i + n])] += 1
        self.D = {n: self._discounts(n) for n in range(1, order + 1)}

    def a(self, g):
        n = len(g)
        if n == self.order or g[0] == "<s>":
            return self.grams[n][g]
        return len({e[0] for e in self.grams[n + 1] if e[1:] == g})

    def _discounts(self, n):
        adjusted = [self.a(g) for g in self.grams[n] if g != ("<s>",)]
        t = [sum(1 for c in adjusted if c == k) for k in (1, 2, 3, 4)]
        if min(t) == 0:
            return (0.5, 1.0, 1.5)
        y = t[0] / (t[0] + 2 * t[1])
        d = (1 - 2 * y * t[1] / t[0], 2 - 3 * y * t[2] / t[1], 3 - 4 * y * t[3] / t[2])
        return d if all(0 < x <= k for k, x in zip((1, 2, 3), d)) else (0.5, 1.0, 1.5)

    def p(self, w, h):
        w = w if w in self.vocab else "<unk>"
        h = tuple(x if x in self.vocab or x == "<s>" else "<unk>" for x in h)
        h = h[len(h) - self.order + 1:] if len(h) >= self.order else h
        n = len(h) + 1
        D = self.D[n]
        disc = lambda c: D[min(c, 3) - 1] if c else 0.0  # noqa: E731
        words = self.vocab if n == 1 else {g[-1] for g in self.grams[n] if g[:-1] == h}
        counts = {x: self.a(h + (x,)) for x in words}
        total = sum(counts.values())
        if total == 0:
            return self.p(w, h[1:])
        gamma = sum(disc(c) for c in counts.values()) / total
        lower = 1.0 / len(self.vocab) if n == 1 else self.p(w, h[1:])
        c = counts.get(w, 0)
        return (c - disc(c)) / total + gamma * lower

    def score(self, sentence):
        words = sentence.split() + ["</s>"]
        ctx = ["<s>"]
        total = 0.0
        for w in words:
            total += math.log10(self.p(w, tuple(ctx)))
            ctx.append(w)
        return total


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("text", ["grammar", "zipf"])
def test_arpa_matches_kenlm_and_the_brute_force_scorer(tmp_path, order, text):
    if text == "grammar":     # few distinct n-grams: mostly fallback discounts
        train = corpus(60, seed=1)
        held = corpus(12, seed=2) + ["the zebra sat on the mat", "cat the", "she saw a unicorn"]
    else:                     # Zipfian words: discounts from counts-of-counts
        train = zipf_corpus(150, seed=1)
        held = zipf_corpus(12, seed=2) + ["w1 w2 zebra w3", "w39 w38 w37 w36"]
    lm = train_kneser_ney(train, order)
    arpa = lm.write_arpa(tmp_path / "lm.arpa")
    model = kenlm.Model(arpa)
    ref = BruteForceKN(train, order)
    assert lm.discounts == [pytest.approx(ref.D[n]) for n in range(1, order + 1)]
    assert model.order == order
    for s in held:
        assert model.score(s, bos=True, eos=True) == pytest.approx(ref.score(s), abs=2e-4)
        assert lm.score(s) == pytest.approx(ref.score(s), abs=1e-9)


def test_discounts_come_from_counts_of_counts_when_defined():
    train = zipf_corpus(200, seed=3)
    lm = train_kneser_ney(train, 2)
    bigrams = collections.Counter()
    for s in train:
        toks = ["<s>"] + s.split() + ["</s>"]
        bigrams.update(zip(toks, toks[1:]))
    t = [sum(1 for c in bigrams.values() if c == k) for k in (1, 2, 3, 4)]
    assert min(t) > 0
    y = t[0] / (t[0] + 2 * t[1])
    assert lm.discounts[1] == pytest.approx((1 - 2 * y * t[1] / t[0], 2 - 3 * y * t[2] / t[1],
                                             3 - 4 * y * t[3] / t[2]))
    assert lm.discounts[1] != (0.5, 1.0, 1.5)


@pytest.mark.parametrize("context", [[], ["<s>"], ["<s>", "the"], ["the", "cat"],
                                     ["a", "dog", "ran"], ["cat", "cat"], ["zebra", "the"],
                                     ["looked", "at"]])
def test_every_context_distribution_sums_to_one_in_kenlm(tmp_path, context):
    lm = train_kneser_ney(corpus(60, seed=4), 3)
    model = kenlm.Model(lm.write_arpa(tmp_path / "lm.arpa"))
    state, out = kenlm.State(), kenlm.State()
    model.NullContextWrite(state)
    for w in context:
        model.BaseScore(state, w, out)
        state, out = out, state
    vocab = sorted(lm.vocabulary - {"<s>"})
    total = sum(10 ** model.BaseScore(state, w, out) for w in vocab)
    assert total == pytest.approx(1.0, abs=1e-4)
    assert sum(10 ** lm.log10_prob(w, context) for w in vocab) == pytest.approx(1.0, abs=1e-9)


def test_reserved_tokens_and_orders_are_checked():
    with pytest.raises(DataError, match="line 2 contains the reserved token"):
        train_kneser_ney(["a b", "a <unk> b"], 3)
    with pytest.raises(DataError, match="order must be between"):
        train_kneser_ney(["a b"], 9)
    with pytest.raises(DataError, match="no words"):
        train_kneser_ney(["", "  "], 2)


def test_build_arpa_refuses_evaluation_sentences_in_the_lm_text(tmp_path):
    text = tmp_path / "lm.txt"
    text.write_text("THE CAT SAT\nA DOG RAN\nSHE SAW IT\n")
    with pytest.raises(DataError, match="2 evaluation sentence") as err:
        build_arpa(text, tmp_path / "lm.arpa", 3,
                   held_out={"valid": ["the  cat sat", "NEW ONE"], "test": ["SHE SAW IT"]})
    assert "valid: 'the cat sat'" in str(err.value) and "test: 'SHE SAW IT'" in str(err.value)
    assert not (tmp_path / "lm.arpa").exists()
    check_disjoint(["A B"], {"valid": ["A B C"]})            # a longer sentence is not a match
    lm = build_arpa(text, tmp_path / "lm.arpa", 3, held_out={"valid": ["NEW ONE"]})
    assert arpa_vocabulary(tmp_path / "lm.arpa") == lm.vocabulary


def test_oov_rate():
    report = oov_rate(["THE CAT SAT", "THE ZEBRA SAT ON A ZEBRA"], {"THE", "CAT", "SAT", "ON"})
    assert (report.oov_tokens, report.total_tokens) == (3, 9)
    assert report.rate == pytest.approx(3 / 9)
    assert report.top[0] == ("ZEBRA", 2)


def test_build_lexicon_spells_words_with_the_boundary(tmp_path):
    d = Dictionary.from_symbols(list("|THECA'"))
    path = build_lexicon(["THE", "CAT", "THE", "CAN'T", "TEA"], d, tmp_path / "lex.txt",
                         unspellable="skip")
    assert (tmp_path / "lex.txt").read_text() == "THE\tT H E |\nCAT\tC A T |\nTEA\tT E A |\n"
    assert path == str(tmp_path / "lex.txt")
    with pytest.raises(DataError, match="1 words use symbols .*`CAN'T`"):
        build_lexicon(["THE", "CAN'T"], d, tmp_path / "lex2.txt")
