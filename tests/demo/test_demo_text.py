"""Text normalisation, sentence sources and pools, phone mapping."""

from __future__ import annotations

import itertools

import pytest

from w2v.plugins.demo.phones import PHONES, clean_phone_string, map_arpabet, to_corpus_phone
from w2v.plugins.demo.sentence_grammar import generate_sentences
from w2v.plugins.demo.text_pools import make_text_pools, text_tag
from w2v.plugins.demo.text_sources import available_sources, split_sentences
from w2v.plugins.demo.textnorm import cardinal, letters, normalize_text, ordinal, year


@pytest.mark.parametrize("raw, expected", [
    ("In 1998, Dr. Smith read 42 books!", "IN NINETEEN NINETY EIGHT DOCTOR SMITH READ FORTY TWO BOOKS"),
    ("It cost $5.50 on the 21st at 10:30.", "IT COST FIVE DOLLARS FIFTY CENTS ON THE TWENTY FIRST AT TEN THIRTY"),
    ("The 1960s: 3.14 & 50% of 1,000,000", "THE NINETEEN SIXTIES THREE POINT ONE FOUR AND FIFTY PERCENT OF ONE MILLION"),
    ("Don't shout -- it's 2005, e.g. now", "DON'T SHOUT IT'S TWO THOUSAND FIVE FOR EXAMPLE NOW"),
    ("“Café” at 9:00 in the U.S.", "CAFE AT NINE O'CLOCK IN THE U S"),
    ("Mr. and Mrs. Jones, 2nd floor", "MISTER AND MISSUS JONES SECOND FLOOR"),
])
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_normalize_text_rejects_what_it_cannot_speak():
    assert normalize_text("a \u00bd cup") is None
    assert normalize_text("Ελληνικά words") is None
    assert normalize_text("...") is None


def test_number_words():
    assert cardinal(0) == "zero" and cardinal(115) == "one hundred fifteen"
    assert cardinal(2_000_017) == "two million seventeen"
    assert ordinal(12) == "twelfth" and ordinal(40) == "fortieth" and ordinal(103) == "one hundred third"
    assert year(1905) == "nineteen oh five" and year(2000) == "two thousand" and year(1800) == "eighteen hundred"


def test_letters_fairseq_format():
    assert letters("THE CAT'S") == "T H E | C A T ' S |"


def test_grammar_is_deterministic_distinct_and_normalisable():
    first = list(itertools.islice(generate_sentences(7), 2000))
    assert first == list(itertools.islice(generate_sentences(7), 2000))
    assert first != list(itertools.islice(generate_sentences(8), 2000))
    assert len(set(first)) == 2000
    normalised = [normalize_text(s) for s in first]
    assert all(normalised)
    assert any(any(c.isdigit() for c in s) for s in first)  # numbers get exercised


def test_split_sentences():
    assert split_sentences("One two. Three four! \"Five\" six? seven") == [
        "One two.", "Three four!", "\"Five\" six? seven"]


def test_pools_from_the_grammar_alone_are_disjoint_and_seeded():
    counts = dict(valid=20, test=20, train=50, unpaired=300, unlabeled=40)
    pools = make_text_pools(1, counts, available=[])
    assert {r: len(v) for r, v in pools.roles.items()} == counts
    assert all(src == ["generator"] for src in pools.sources.values())
    everything = [s for v in pools.roles.values() for s in v]
    assert len(everything) == len(set(everything))
    assert all(4 <= len(s.split()) <= 20 for s in pools.roles["train"])
    assert make_text_pools(1, counts, available=[]).roles == pools.roles
    assert make_text_pools(2, counts, available=[]).roles["train"] != pools.roles["train"]
    assert text_tag([]) == "g"


@pytest.mark.skipif("wordnet" not in available_sources(), reason="wordnet-base not installed")
def test_pools_from_debian_sources():
    sources = available_sources()
    pools = make_text_pools(1, dict(valid=10, test=10, train=30, unpaired=200, unlabeled=20),
                            available=sources)
    assert pools.sources["train"] == ["wordnet"]
    if "kjv" in sources:
        assert pools.sources["unlabeled"] == ["kjv"]
    if "fortunes" in sources:
        assert set(pools.sources["unpaired"]) == {"wordnet", "fortunes"}
    everything = [s for v in pools.roles.values() for s in v]
    assert len(everything) == len(set(everything))
    assert text_tag(sources).startswith("w")


def test_accent_and_rare_symbols_map_into_the_phone_set():
    assert to_corpus_phone("ˈɑːɹ") == "ɑːɹ"
    assert to_corpus_phone("ɒ") == "ɑː" and to_corpus_phone("əʊ") == "oʊ"
    assert to_corpus_phone("x") == "k" and to_corpus_phone("ɔ̃") == "ɔ"
    assert to_corpus_phone("") == "sil"
    assert to_corpus_phone("☃") is None
    for symbol in ("ɒ", "a", "eə", "ʉː", "t̪", "nʲ", "ʍ", "əɹ", "r"):
        assert to_corpus_phone(symbol) in PHONES
    phones, dropped = clean_phone_string("ð ə | k w ɪ k ☃ x")
    assert phones == ["ð", "ə", "k", "w", "ɪ", "k", "k"] and dropped == ["☃"]


def test_arpabet_maps_with_r_colouring():
    assert map_arpabet("pau sh aa r p pau".split()) == [
        ("sil", 1), ("ʃ", 1), ("ɑːɹ", 2), ("p", 1), ("sil", 1)]
    # r followed by a vowel stays a consonant: "very"
    assert [p for p, _ in map_arpabet("v eh r iy".split())] == ["v", "ɛ", "ɹ", "iː"]
    assert [p for p, _ in map_arpabet("hh ax l ow1".split())] == ["h", "ə", "l", "oʊ"]
    assert all(p in PHONES or p == "sil" for p, _ in map_arpabet(
        "aa ae ah ao aw ax ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th "
        "uh uw v w y z zh".split()))
