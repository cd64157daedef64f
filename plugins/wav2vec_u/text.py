"""Text preparation for wav2vec-U (fairseq ``prepare_text.sh``), without Kaldi or fastText.

unpaired sentences --normalise--> words --lexicon (espeak-ng G2P per word, or a
given lexicon)--> phones --phone dictionary (phones seen ``min_count`` times,
plus ``<SIL>``)--> sentences as phones with ``<SIL>`` between words with
probability ``sil_prob`` and around each sentence --> a phone n-gram (the
project's Kneser-Ney estimator, written as ARPA) for checkpoint selection.

A sentence with a word the lexicon cannot spell is left out and counted (fairseq
drops it silently); the caller reports the count.
"""

from __future__ import annotations

import collections
import logging
import re
from typing import Iterable, Mapping, Sequence

import attrs
import torch

from w2v.data.dictionary import Dictionary

SILENCE = "<SIL>"
Lexicon = Mapping[str, Sequence[str]]


def normalise(line: str) -> str:
    """Upper case, letters, digits and apostrophes only, single spaces."""
    return " ".join(re.sub(r"[^\w' ]+|_", " ", line.upper()).split())


def espeak_lexicon(words: Iterable[str], language: str = "en-us") -> dict[str, list[str]]:
    """Each word's phones from espeak-ng (the ``espeakng-loader`` wheel) through
    phonemizer, without stress marks; words espeak cannot spell get no entry."""
    import espeakng_loader
    from phonemizer.backend import EspeakBackend
    from phonemizer.backend.espeak.wrapper import EspeakWrapper
    from phonemizer.separator import Separator

    words = sorted(set(words))
    if not words:
        return {}
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    quiet = logging.getLogger("w2v.wav2vec_u.phonemizer")
    quiet.setLevel(logging.ERROR)
    backend = EspeakBackend(language, with_stress=False, logger=quiet,
                            language_switch="remove-flags")
    spoken = backend.phonemize([w.lower() for w in words], separator=Separator(
        phone=" ", word="", syllable=""), strip=True, njobs=1)
    return {w: p.split() for w, p in zip(words, spoken) if p.split()}


def phone_dictionary(lexicon: Lexicon, sentences: Iterable[Sequence[str]],
                     min_count: int = 1) -> Dictionary:
    """Phones spoken at least ``min_count`` times in ``sentences`` (word lists), most
    frequent first, then ``<SIL>`` (fairseq's ``dict.phn.txt``)."""
    counts: collections.Counter[str] = collections.Counter()
    for words in sentences:
        for w in words:
            counts.update(lexicon.get(w, ()))
    kept = [(p, c) for p, c in sorted(counts.items(), key=lambda pc: (-pc[1], pc[0]))
            if c >= min_count and p != SILENCE]
    return Dictionary.from_symbols([p for p, _ in kept] + [SILENCE],
                                   counts=[c for _, c in kept] + [0])


def filter_lexicon(lexicon: Lexicon, dictionary: Dictionary) -> dict[str, list[str]]:
    """Words whose every phone is in ``dictionary``."""
    return {w: list(p) for w, p in lexicon.items() if all(x in dictionary for x in p)}


@attrs.define
class PhonemisedText:
    """Phone sentences (each a list of phones) and how many sentences were left out."""

    sentences: list[list[str]]
    left_out: int


def phonemise_with_silence(sentences: Iterable[Sequence[str]], lexicon: Lexicon, *,
                           sil_prob: float, surround: bool = True,
                           seed: int = 0) -> PhonemisedText:
    """Words -> phones with ``<SIL>`` after each word but the last with probability
    ``sil_prob`` and, with ``surround``, at both ends (fairseq ``phonemize_with_sil.py``)."""
    g = torch.Generator().manual_seed(seed)
    out, left_out = [], 0
    for words in sentences:
        if not words or any(w not in lexicon for w in words):
            left_out += 1
            continue
        draws = torch.rand(max(len(words) - 1, 0), generator=g).tolist()
        phones = [SILENCE] if surround else []
        for i, w in enumerate(words):
            phones.extend(lexicon[w])
            if i < len(draws) and draws[i] < sil_prob:
                phones.append(SILENCE)
        if surround:
            phones.append(SILENCE)
        out.append(phones)
    return PhonemisedText(sentences=out, left_out=left_out)
