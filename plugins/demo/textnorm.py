"""Text normalisation for the demo corpus: one sentence in, one transcript out.

The transcript is what the engines speak and what ``.wrd``, ``.ltr`` and
``.phn`` are made from, so a sentence is normalised exactly once:
numbers, currency, ordinals, years, times and common abbreviations become
words; symbols with a spoken form (``&``, ``%``, ``+``) become that word;
other punctuation is dropped; apostrophes stay inside words
(``DON'T``). The result is upper case ``A-Z`` and ``'`` words separated by
single spaces, or None when the sentence cannot be normalised cleanly.
"""

from __future__ import annotations

import re
import unicodedata

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                  "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}

# Abbreviations that end in a period (matched case-sensitively, before the period is dropped).
_ABBREVIATIONS = {
    "Mr.": "mister", "Mrs.": "missus", "Ms.": "miz", "Dr.": "doctor", "Prof.": "professor",
    "St.": "saint", "Mt.": "mount", "Jr.": "junior", "Sr.": "senior", "Capt.": "captain",
    "Col.": "colonel", "Gen.": "general", "Lt.": "lieutenant", "Sgt.": "sergeant",
    "Gov.": "governor", "Rev.": "reverend", "Hon.": "honorable", "Ave.": "avenue",
    "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "vs.": "versus",
    "approx.": "approximately", "Inc.": "incorporated", "Ltd.": "limited", "Co.": "company",
    "Jan.": "january", "Feb.": "february", "Aug.": "august", "Sept.": "september",
    "Oct.": "october", "Nov.": "november", "Dec.": "december", "a.m.": "a m", "p.m.": "p m",
    "A.M.": "a m", "P.M.": "p m", "U.S.": "u s", "U.K.": "u k",
}
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals ",
            "#": " number "}
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}


def cardinal(n: int) -> str:
    """English words for a non-negative integer below a trillion (``42`` -> ``forty two``)."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + cardinal(rest))
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return cardinal(high) + " " + name + ("" if rest == 0 else " " + cardinal(rest))
    raise AssertionError(n)


def ordinal(n: int) -> str:
    """``21`` -> ``twenty first``."""
    words = cardinal(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year(n: int) -> str:
    """Years read in pairs: ``1998`` -> ``nineteen ninety eight``, ``2005`` -> ``two thousand five``."""
    high, low = divmod(n, 100)
    if n % 1000 < 10 and n // 1000 in (1, 2) and high % 10 == 0:
        return cardinal(n)
    if low == 0:
        return cardinal(high) + " hundred"
    return cardinal(high) + " " + (("oh " + _ONES[low]) if low < 10 else cardinal(low))


def _digits(text: str) -> str:
    return " ".join(_ONES[int(d)] for d in text)


def _money(match: re.Match) -> str:
    unit, units, sub, subs = _CURRENCY[match.group(1)]
    whole = int(match.group(2).replace(",", ""))
    words = f"{cardinal(whole)} {unit if whole == 1 else units}"
    if match.group(3):
        cents = int((match.group(3) + "0")[:2])
        if cents:
            words += f" {cardinal(cents)} {sub if cents == 1 else subs}"
    return f" {words} "


def _number(match: re.Match) -> str:
    text = match.group(0)
    if ":" in text:  # a time of day: 10:30
        hours, minutes = text.split(":")
        m = int(minutes)
        after = "o'clock" if m == 0 else ("oh " + _ONES[m]) if m < 10 else cardinal(m)
        return f" {cardinal(int(hours))} {after} "
    if "." in text:
        whole, frac = text.split(".")
        return f" {cardinal(int(whole.replace(',', '') or 0))} point {_digits(frac)} "
    if "," in text:
        return f" {cardinal(int(text.replace(',', '')))} "
    n = int(text)
    if len(text) > 1 and text.startswith("0"):
        return f" {_digits(text)} "
    if len(text) == 4 and 1100 <= n <= 2099:
        return f" {year(n)} "
    if len(text) > 12:
        return f" {_digits(text)} "
    return f" {cardinal(n)} "


_MONEY_RE = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{1,2}))?\b")
_ORDINAL_RE = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECADE_RE = re.compile(r"\b(1\d|20)(\d)0'?s\b")
_NUMBER_RE = re.compile(r"\d{1,2}:\d\d\b|\d[\d,]*\.\d+|\d{1,3}(?:,\d{3})+|\d+")
_ACRONYM_RE = re.compile(r"\b(?:[A-Z]\.){2,}")
_KEEP_RE = re.compile(r"[^a-z' ]")


def _decade(match: re.Match) -> str:
    words = year(int(match.group(1) + match.group(2) + "0")).split()
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return " " + " ".join(words) + " "


def normalize_text(sentence: str) -> str | None:
    """The spoken transcript of ``sentence`` (upper case words), or None if it cannot be
    normalised to plain ``A-Z'`` words."""
    text = unicodedata.normalize("NFKD", sentence)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = text.replace("\u201c", '"').replace("\u201d", '"')
    text = "".join(c for c in text if not unicodedata.combining(c))
    for abbreviation, words in _ABBREVIATIONS.items():
        if abbreviation in text:
            text = re.sub(r"(?<![A-Za-z])" + re.escape(abbreviation), f" {words} ", text)
    text = _ACRONYM_RE.sub(lambda m: " " + " ".join(m.group(0).replace(".", "")) + " ", text)
    text = _MONEY_RE.sub(_money, text)
    text = _DECADE_RE.sub(_decade, text)
    text = _ORDINAL_RE.sub(lambda m: f" {ordinal(int(m.group(1)))} ", text)
    text = _NUMBER_RE.sub(_number, text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = text.lower()
    if not text.isascii():
        return None
    text = re.sub(r"[-_/\\\u2013\u2014]", " ", text)
    text = re.sub(r"[\"()\[\]{}.,;:!?*~<>|^]", " ", text)
    if _KEEP_RE.search(text):
        return None
    words = [w.strip("'") for w in text.split()]
    words = [w for w in words if w]
    if not words:
        return None
    return " ".join(words).upper()


def letters(transcript: str) -> str:
    """fairseq letter targets: ``THE CAT`` -> ``T H E | C A T |``."""
    return " ".join(" ".join(word) + " |" for word in transcript.split())
