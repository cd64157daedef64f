"""Word n-gram language models for CTC beam search: interpolated modified Kneser-Ney
estimated in pure Python and written as ARPA (which KenLM and flashlight read), plus
the text checks that go with an LM (OOV rate, no overlap with evaluation text).

The estimate follows Chen & Goodman (1998) as KenLM's ``lmplz`` implements it,
without pruning (see docs/lm.md):

* sentences are ``<s> w1 ... wk </s>`` with one ``<s>``;
* adjusted counts ``a``: raw counts for the highest order and for n-grams that
  start with ``<s>``; otherwise the number of distinct words seen to the left;
* per order n, discounts from the counts-of-counts ``t1..t4`` of ``a``:
  ``Y = t1 / (t1 + 2 t2)``, ``D1 = 1 - 2Y t2/t1``, ``D2 = 2 - 3Y t3/t2``,
  ``D3+ = 3 - 4Y t4/t3`` (``0.5, 1, 1.5`` when these are undefined or out of range,
  like ``lmplz --discount_fallback``);
* ``p(w | h) = (a(hw) - D(a(hw))) / S(h) + gamma(h) p(w | h')`` with
  ``S(h) = sum_x a(hx)``, ``gamma(h) = sum_x D(a(hx)) / S(h)``, ``h'`` = h without
  its first word, ``p(w | h) = p(w | h')`` for an unseen context; unigrams
  interpolate with the uniform distribution over the vocabulary (``</s>`` and
  ``<unk>`` included), which is where ``<unk>`` gets its probability.

In the ARPA file each seen n-gram carries its interpolated probability and each
context its ``gamma`` as backoff, so ARPA backoff arithmetic gives back exactly
the interpolated model.
"""

from __future__ import annotations

import collections
import math
import os
from typing import Iterable, Mapping, Sequence

import attrs

from w2v.errors import DataError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
MAX_ORDER = 6

Gram = tuple[str, ...]


# --------------------------------------------------------------------------- estimation


def _discounts(adjusted: Mapping[Gram, int]) -> tuple[float, float, float]:
    """``(D1, D2, D3+)`` from the counts-of-counts of one order's adjusted counts."""
    t = collections.Counter(c for c in adjusted.values() if c <= 4)
    t1, t2, t3, t4 = (t[k] for k in (1, 2, 3, 4))
    if min(t1, t2, t3, t4) == 0:
        return FALLBACK_DISCOUNTS
    y = t1 / (t1 + 2 * t2)
    d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    if not all(0 < dk <= k for k, dk in enumerate(d, start=1)):
        return FALLBACK_DISCOUNTS
    return d


def _count(sentences: Iterable[Sequence[str]], order: int) -> list[collections.Counter]:
    """Raw counts of every n-gram (n = 1..order) of ``<s> words </s>``."""
    raw = [collections.Counter() for _ in range(order)]
    for words in sentences:
        toks = (BOS, *words, EOS)
        for n in range(1, order + 1):
            counter = raw[n - 1]
            for i in range(len(toks) - n + 1):
                counter[toks[i:i + n]] += 1
    del raw[0][(BOS,)]
    return raw


def _adjust(raw: list[collections.Counter]) -> list[dict[Gram, int]]:
    """Kneser-Ney adjusted counts (see the module docstring)."""
    order = len(raw)
    adjusted: list[dict[Gram, int]] = [dict() for _ in range(order)]
    adjusted[-1] = dict(raw[-1])
    for n in range(order - 1, 0, -1):          # n-grams of order n from (n+1)-grams
        table = collections.Counter(g[1:] for g in raw[n])
        table.update({g: c for g, c in raw[n - 1].items() if g[0] == BOS})
        adjusted[n - 1] = dict(table)
    return adjusted


@attrs.frozen(kw_only=True)
class NGramEntry:
    """One ARPA row: log10 probability and log10 backoff (0 when none)."""

    log_prob: float
    backoff: float = 0.0


@attrs.define(kw_only=True)
class KneserNeyLM:
    """An estimated model: ``ngrams[n-1]`` maps each n-gram to its :class:`NGramEntry`.

    Attributes:
        order: highest n-gram order.
        discounts: ``(D1, D2, D3+)`` per order.
    """

    order: int
    ngrams: list[dict[Gram, NGramEntry]]
    discounts: list[tuple[float, float, float]]

    @property
    def vocabulary(self) -> set[str]:
        """Words the model knows (``<s>``, ``</s>``, ``<unk>`` included)."""
        return {g[0] for g in self.ngrams[0]}

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 p(word | context) by ARPA backoff (``context`` most recent last)."""
        vocab = self.ngrams[0]
        w = word if (word,) in vocab else UNK
        h = tuple(c if (c,) in vocab else UNK for c in context)
        h = h[max(0, len(h) - self.order + 1):]
        backoff = 0.0
        for start in range(len(h) + 1):
            ctx = h[start:]
            hit = self.ngrams[len(ctx)].get(ctx + (w,))
            if hit is not None:
                return backoff + hit.log_prob
            if ctx:
                entry = self.ngrams[len(ctx) - 1].get(ctx)
                backoff += entry.backoff if entry is not None else 0.0
        raise AssertionError("unreachable: every word has a unigram")

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a whitespace-separated sentence (as ``kenlm.Model.score``)."""
        words = sentence.split() + ([EOS] if eos else [])
        context: list[str] = [BOS] if bos else []
        total = 0.0
        for w in words:
            total += self.log10_prob(w, context)
            context.append(w)
        return total

    def write_arpa(self, path: str | os.PathLike) -> str:
        """Write the model as an ARPA file; returns the path."""
        path = os.fspath(path)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n, table in enumerate(self.ngrams, start=1):
                f.write(f"ngram {n}={len(table)}\n")
            for n, table in enumerate(self.ngrams, start=1):
                f.write(f"\n\\{n}-grams:\n")
                for gram in sorted(table):
                    e = table[gram]
                    line = f"{e.log_prob:.7g}\t{' '.join(gram)}"
                    if n < self.order:
                        line += f"\t{e.backoff:.7g}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        return path


def train_kneser_ney(sentences: Iterable[str], order: int = 4) -> KneserNeyLM:
    """Estimate an interpolated modified Kneser-Ney model of ``order`` from text lines
    (whitespace-separated words; empty lines are skipped)."""
    if not 1 <= order <= MAX_ORDER:
        raise DataError(f"n-gram order must be between 1 and {MAX_ORDER}, found {order}.")
    split = []
    for number, line in enumerate(sentences, start=1):
        words = line.split()
        reserved = {BOS, EOS, UNK}.intersection(words)
        if reserved:
            raise DataError(f"LM text line {number} contains the reserved token(s) "
                            f"{', '.join(sorted(reserved))}.", hint="Remove them from the text.")
        if words:
            split.append(words)
    if not split:
        raise DataError("the LM text has no words.")
    adjusted = _adjust(_count(split, order))
    discounts = [_discounts(a) for a in adjusted]

    def discount(n: int, c: int) -> float:
        return discounts[n - 1][min(c, 3) - 1]

    # per context: S(h) and gamma(h) at every order
    totals: list[dict[Gram, list[float]]] = []
    for n, table in enumerate(adjusted, start=1):
        acc: dict[Gram, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
        for g, c in table.items():
            s = acc[g[:-1]]
            s[0] += c
            s[1] += discount(n, c)
        totals.append({h: [s, d / s] for h, (s, d) in acc.items()})

    unigrams = adjusted[0]
    vocab = sorted({g[0] for g in unigrams} | {UNK})
    s0, gamma0 = totals[0][()]
    probs: list[dict[Gram, float]] = [{
        (w,): (unigrams[(w,)] - discount(1, unigrams[(w,)]) if (w,) in unigrams else 0.0) / s0
        + gamma0 / len(vocab) for w in vocab}]
    for n in range(2, order + 1):
        level = {}
        for g, c in adjusted[n - 1].items():
            s, gamma = totals[n - 1][g[:-1]]
            level[g] = (c - discount(n, c)) / s + gamma * probs[n - 2][g[1:]]
        probs.append(level)

    ngrams: list[dict[Gram, NGramEntry]] = []
    for n, level in enumerate(probs, start=1):
        ctx = totals[n] if n < order else {}
        ngrams.append({g: NGramEntry(log_prob=math.log10(p),
                                     backoff=math.log10(ctx[g][1]) if g in ctx else 0.0)
                       for g, p in level.items()})
    bos_ctx = totals[1].get((BOS,)) if order > 1 else None
    ngrams[0][(BOS,)] = NGramEntry(log_prob=-99.0,
                                   backoff=math.log10(bos_ctx[1]) if bos_ctx else 0.0)
    return KneserNeyLM(order=order, ngrams=ngrams, discounts=discounts)


# --------------------------------------------------------------------------- text checks


def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty lines of a UTF-8 text file, whitespace-normalised."""
    try:
        with open(path, encoding="utf-8") as f:
            return [" ".join(line.split()) for line in f if line.strip()]
    except FileNotFoundError:
        raise DataError(f"text file `{os.fspath(path)}` does not exist.") from None


def check_disjoint(lm_sentences: Iterable[str], held_out: Mapping[str, Iterable[str]]) -> None:
    """Raise a DataError when any held-out sentence (valid/test transcripts, keyed by the
    set's name) also occurs in the LM text (case and spacing ignored)."""
    lm = {" ".join(s.split()).casefold() for s in lm_sentences}
    found = []
    for name, sentences in held_out.items():
        for s in sentences:
            key = " ".join(s.split()).casefold()
            if key and key in lm:
                found.append(f"{name}: {' '.join(s.split())!r}")
    if found:
        shown = "; ".join(found[:10]) + (f"; ... ({len(found)} in all)" if len(found) > 10 else "")
        raise DataError(f"the LM text contains {len(found)} evaluation sentence(s): {shown}.",
                        hint="Remove the valid/test transcripts from the LM text, or the "
                             "decoding results will be optimistic.")


@attrs.frozen(kw_only=True)
class OOVReport:
    """Out-of-vocabulary words of a transcript set against an LM vocabulary."""

    rate: float
    oov_tokens: int
    total_tokens: int
    top: list[tuple[str, int]]


def oov_rate(transcripts: Iterable[str], vocabulary: Iterable[str], top: int = 20) -> OOVReport:
    """The fraction of running words of ``transcripts`` not in ``vocabulary``."""
    vocab = set(vocabulary)
    oov: collections.Counter[str] = collections.Counter()
    total = 0
    for line in transcripts:
        words = line.split()
        total += len(words)
        oov.update(w for w in words if w not in vocab)
    n = sum(oov.values())
    return OOVReport(rate=n / total if total else 0.0, oov_tokens=n, total_tokens=total,
                     top=oov.most_common(top))


def arpa_vocabulary(path: str | os.PathLike) -> set[str]:
    """The unigrams of an ARPA file."""
    words, inside = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                if inside:
                    break
                inside = line == "\\1-grams:"
                continue
            if inside and line:
                words.add(line.split()[1])
    return words


def build_arpa(text: str | os.PathLike, arpa: str | os.PathLike, order: int = 4,
               held_out: Mapping[str, Iterable[str]] | None = None) -> KneserNeyLM:
    """Estimate a Kneser-Ney model from a text file and write it as ARPA.

    ``held_out`` (``{"valid": [...], "test": [...]}``) are transcripts that must not
    occur in the text.
    """
    lines = read_lines(text)
    if held_out:
        check_disjoint(lines, held_out)
    lm = train_kneser_ney(lines, order)
    lm.write_arpa(arpa)
    return lm


def read_arpa(path: str | os.PathLike) -> KneserNeyLM:
    """An ARPA file as a :class:`KneserNeyLM` that scores by ARPA backoff (``discounts``
    unknown, left empty): ``read_arpa(p).score(s)`` equals the written model's ``score(s)``."""
    ngrams: list[dict[Gram, NGramEntry]] = []
    order = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line == "\\data\\" or line.startswith("ngram "):
                continue
            if line == "\\end\\":
                break
            if line.startswith("\\") and line.endswith("-grams:"):
                order = int(line[1:line.index("-")])
                ngrams.append({})
                continue
            if order == 0:
                raise DataError(f"`{path}` is not an ARPA file (no `\\1-grams:` section).")
            parts = line.split("\t") if "\t" in line else line.split()
            if "\t" in line:
                gram, rest = tuple(parts[1].split()), parts[2:]
            else:
                gram, rest = tuple(parts[1:1 + order]), parts[1 + order:]
            ngrams[order - 1][gram] = NGramEntry(log_prob=float(parts[0]),
                                                 backoff=float(rest[0]) if rest else 0.0)
    if not ngrams:
        raise DataError(f"`{path}` holds no n-grams.")
    return KneserNeyLM(order=len(ngrams), ngrams=ngrams, discounts=[])
