"""The corpus phone set and the maps into it.

Every phone the corpus writes (``.phn``, ``unpaired.phn``, alignments) is one
of :data:`PHONES`: the IPA symbols that espeak-ng's ``en-us`` G2P produces
without stress marks (``ɑːɹ``, ``əl`` and ``aɪɚ`` are single phones there),
plus ``sil`` in alignments. Symbols from other sources are mapped in:

- rare G2P symbols (``x``, ``r``, nasal vowels from loanwords) with :data:`RARE`;
- espeak-ng events of the other English accents (``ɒ``, ``əʊ``, ``eə`` ...) with :data:`ACCENT`;
- ARPAbet phones of flite and festival with :data:`ARPABET` (+ r-coloured merges);
- SAMPA phones of the mbrola voices with :data:`SAMPA`.

:func:`to_corpus_phone` applies them; what still does not map is returned as None
(and counted by the caller) rather than invented.
"""

from __future__ import annotations

import unicodedata

#: espeak-ng ``en-us`` phones without stress, most frequent first (measured on 10k WordNet sentences).
PHONES = ("n ɪ t ə s d ɹ l k ð z m ʌ ɛ p æ v iː f h w eɪ ɚ b ɐ aɪ i ᵻ uː oʊ ʃ ɑː ŋ ɡ ɜː ɾ "
          "əl ɔːɹ j dʒ ɔː aʊ tʃ ʊ ɑːɹ ɔ θ ɛɹ iə ɪɹ ɔɪ ʊɹ ʒ aɪɚ aɪə n̩ ʔ").split()
SILENCE = "sil"
_PHONE_SET = frozenset(PHONES)

RARE = {"x": "k", "r": "ɹ", "ɔ̃": "ɔ", "ɑ̃": "ɑː", "æ̃": "æ", "ɛ̃": "ɛ", "õ": "oʊ", "ɐ̃": "ɐ",
        "nʲ": "n", "ç": "h", "ɬ": "l", "χ": "k", "ɣ": "ɡ", "β": "b", "œ": "ɜː", "ø": "ɜː",
        "y": "uː", "ʏ": "ʊ", "ɲ": "n", "ʎ": "l", "ʁ": "ɹ", "ɨ": "ɪ", "ɵ": "oʊ", "ʍ": "w",
        "ɑ": "ɑː", "ɜ": "ɜː", "o": "oʊ", "e": "ɛ", "a": "æ", "u": "uː", "g": "ɡ", "ɫ": "l",
        "ɹ̩": "ɚ", "l̩": "əl", "m̩": "m", "ɚː": "ɚ", "ɝ": "ɜː", "t̪": "t", "d̪": "d", "ʲ": "j"}
ACCENT = {"ɒ": "ɑː", "əʊ": "oʊ", "eə": "ɛɹ", "ʊə": "ʊɹ", "eː": "eɪ", "oː": "oʊ", "ʉ": "uː",
          "ʉː": "uː", "aː": "ɑː", "a:": "ɑː", "ʌʉ": "aʊ", "ʌɹ": "ɚ", "ʉɹ": "ʊɹ", "əɹ": "ɚ",
          "æʊ": "aʊ", "ei": "eɪ", "əu": "oʊ", "ʌʊ": "oʊ", "oɪ": "ɔɪ", "oə": "ɔːɹ", "ɑə": "ɑːɹ",
          "ɔə": "ɔːɹ", "aa": "ɑː", "əɪ": "aɪ", "ɛə": "æ", "ɪə": "iə", "aʊə": "aʊ", "ɑːə": "ɑː"}
ARPABET = {"aa": "ɑː", "ae": "æ", "ah": "ʌ", "ao": "ɔː", "aw": "aʊ", "ax": "ə", "axr": "ɚ",
           "ay": "aɪ", "b": "b", "ch": "tʃ", "d": "d", "dh": "ð", "dx": "ɾ", "eh": "ɛ", "el": "əl",
           "em": "m", "en": "n̩", "er": "ɚ", "ey": "eɪ", "f": "f", "g": "ɡ", "hh": "h", "ih": "ɪ",
           "ix": "ᵻ", "iy": "iː", "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ",
           "nx": "n", "ow": "oʊ", "oy": "ɔɪ", "p": "p", "q": "ʔ", "r": "ɹ", "s": "s", "sh": "ʃ",
           "t": "t", "th": "θ", "uh": "ʊ", "uw": "uː", "ux": "uː", "v": "v", "w": "w", "y": "j",
           "z": "z", "zh": "ʒ", "pau": SILENCE, "h#": SILENCE, "sil": SILENCE, "ssil": SILENCE,
           "brth": SILENCE, "#": SILENCE}
#: ARPAbet vowel + ``r`` (or schwa + ``l``) that espeak-ng en-us writes as one phone (when no vowel follows).
ARPABET_R_MERGES = {("aa", "r"): "ɑːɹ", ("ao", "r"): "ɔːɹ", ("ow", "r"): "ɔːɹ", ("eh", "r"): "ɛɹ",
                    ("ih", "r"): "ɪɹ", ("iy", "r"): "ɪɹ", ("uh", "r"): "ʊɹ", ("uw", "r"): "ʊɹ",
                    ("er", "r"): "ɚ", ("ay", "er"): "aɪɚ", ("ah", "r"): "ɚ", ("ax", "r"): "ɚ",
                    ("ax", "l"): "əl"}
ARPABET_VOWELS = frozenset("aa ae ah ao aw ax axr ay eh er ey ih ix iy ow oy uh uw ux el en".split())
#: The mbrola US/British voices' SAMPA phone names as espeak-ng writes them in ``--pho`` output.
SAMPA = {"p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "g": "ɡ", "f": "f", "v": "v", "T": "θ",
         "D": "ð", "s": "s", "z": "z", "S": "ʃ", "Z": "ʒ", "h": "h", "tS": "tʃ", "dZ": "dʒ",
         "m": "m", "n": "n", "N": "ŋ", "l": "l", "r": "ɹ", "r=": "ɚ", "w": "w", "j": "j",
         "I": "ɪ", "E": "ɛ", "{": "æ", "V": "ʌ", "U": "ʊ", "@": "ə", "i": "iː", "i:": "iː",
         "u": "uː", "u:": "uː", "A": "ɑː", "A:": "ɑː", "O": "ɔː", "O:": "ɔː", "3": "ɜː",
         "3:": "ɜː", "@`": "ɚ", "eI": "eɪ", "aI": "aɪ", "OI": "ɔɪ", "oU": "oʊ", "@U": "oʊ",
         "aU": "aʊ", "I@": "iə", "e@": "ɛɹ", "U@": "ʊɹ", "Q": "ɑː", "_": SILENCE, "#": SILENCE,
         "4": "ɾ", "l=": "əl", "n=": "n̩", "?": "ʔ", "E@": "ɛɹ", "A@": "ɑːɹ", "O@": "ɔːɹ",
         "i@": "ɪɹ", "a": "æ", "e": "ɛ", "o": "oʊ", "@r": "ɚ"}

_STRESS = str.maketrans("", "", "ˈˌ'%=")


def is_phone(symbol: str) -> bool:
    return symbol in _PHONE_SET


def to_corpus_phone(symbol: str) -> str | None:
    """Map an IPA symbol (G2P output or an espeak-ng event of any English accent) to
    :data:`PHONES` or ``sil``; None when it has no reasonable counterpart."""
    symbol = unicodedata.normalize("NFC", symbol.translate(_STRESS).strip())
    if not symbol:
        return SILENCE
    for table in (None, RARE, ACCENT):
        mapped = symbol if table is None else table.get(symbol)
        if mapped is not None and (mapped in _PHONE_SET or mapped == SILENCE):
            return mapped
    bare = "".join(c for c in unicodedata.normalize("NFD", symbol)
                   if not unicodedata.combining(c) and c not in "ʲʰʷ̃")
    bare = unicodedata.normalize("NFC", bare)
    for candidate in (bare, RARE.get(bare), ACCENT.get(bare), bare.rstrip("ː")):
        if candidate in _PHONE_SET:
            return candidate
    return None


def map_arpabet(phones: list[str]) -> list[tuple[str, int]]:
    """ARPAbet phones -> (corpus phone, number of source phones it covers).

    A vowel followed by ``r`` that is not followed by a vowel becomes espeak's
    single r-coloured phone (``sh aa r p`` -> ``ʃ ɑːɹ p``), so the covered count is 2.
    """
    bare = [p.lower().rstrip("012") for p in phones]
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(bare):
        pair = tuple(bare[i:i + 2])
        after = bare[i + 2] if i + 2 < len(bare) else None
        if len(pair) == 2 and pair in ARPABET_R_MERGES and after not in ARPABET_VOWELS:
            out.append((ARPABET_R_MERGES[pair], 2))
            i += 2
            continue
        out.append((ARPABET.get(bare[i]) or to_corpus_phone(bare[i]) or SILENCE, 1))
        i += 1
    return out


def map_sampa(symbol: str) -> str:
    """An mbrola (SAMPA) phone name -> corpus phone (``sil`` if unknown)."""
    return SAMPA.get(symbol) or SAMPA.get(symbol.rstrip(":")) or SILENCE


def clean_phone_string(phones: str) -> tuple[list[str], list[str]]:
    """Map a space-separated G2P phone string to corpus phones.

    Returns (phones, dropped): the mapped phones, and the symbols that had no counterpart.
    """
    out, dropped = [], []
    for symbol in phones.split():
        if symbol == "|":
            continue
        mapped = to_corpus_phone(symbol)
        if mapped is None or mapped == SILENCE:
            dropped.append(symbol)
        else:
            out.append(mapped)
    return out, dropped
