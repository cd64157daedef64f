"""Lexicons for lexicon-constrained CTC beam search: each word spelled in dictionary
symbols and ended by the word boundary (``CAT C A T |``), as fairseq and flashlight
read them."""

from __future__ import annotations

import os
from typing import Iterable, Literal

from w2v.data.dictionary import Dictionary
from w2v.errors import DataError


def spell(word: str, dictionary: Dictionary) -> list[str] | None:
    """The letters of ``word`` followed by the word boundary, or None when a letter is
    not in the dictionary."""
    letters = list(word)
    if not letters or any(c not in dictionary for c in letters):
        return None
    return letters + [dictionary.word_boundary]


def build_lexicon(words: Iterable[str], dictionary: Dictionary, path: str | os.PathLike, *,
                  unspellable: Literal["error", "skip"] = "error") -> str:
    """Write a lexicon of the distinct ``words`` (first-seen order) to ``path``.

    Args:
        unspellable: what to do with words that use symbols the dictionary lacks
            (digits, lower case against an upper-case dictionary): ``error`` raises a
            DataError naming some of them, ``skip`` leaves them out.

    Returns:
        ``path`` as a string.
    """
    rows, bad = [], []
    for word in dict.fromkeys(words):
        letters = spell(word, dictionary)
        if letters is None:
            bad.append(word)
        else:
            rows.append(f"{word}\t{' '.join(letters)}\n")
    if bad and unspellable == "error":
        shown = ", ".join(f"`{w}`" for w in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise DataError(f"{len(bad)} words use symbols that are not in the dictionary: {shown}.",
                        hint="Normalise the text like the labels (case, punctuation), or pass "
                             "unspellable='skip'.")
    if not rows:
        raise DataError("no word of the text can be spelled with the dictionary; the lexicon "
                        "would be empty.")
    path = os.fspath(path)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(rows)
    return path
