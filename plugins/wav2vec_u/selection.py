"""Decoding generator outputs and choosing a checkpoint without labels (wav2vec-U).

* :func:`viterbi_phones`: the most likely phone per segment frame, consecutive
  repeats merged, specials and silence dropped (fairseq's Viterbi decoder with
  no LM: without a transition model, Viterbi is the per-frame argmax).
* :func:`weighted_lm_perplexity`: fairseq's ``weighted_lm_ppl``, the phone-LM
  perplexity of those outputs divided by ``vocab_usage ** power`` (the fraction of
  the phone inventory the outputs use), so a generator that collapses onto a few
  likely phones is not rewarded. Lower is better; it needs no transcripts.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import attrs
import torch
from torch import Tensor

from w2v.data.dictionary import Dictionary
from w2v.plugins.ctc.metrics import word_edits


def viterbi_phones(logits: Tensor, lengths: Tensor | None, dictionary: Dictionary,
                   silence: str | None = "<SIL>") -> list[list[int]]:
    """``logits`` ``[B, T, V]`` -> per utterance the phone ids (repeats merged; specials
    and ``silence`` removed)."""
    best = logits.argmax(-1).cpu()
    n = [best.shape[1]] * best.shape[0] if lengths is None else lengths.tolist()
    drop = set(range(dictionary.nspecial))
    if silence is not None and silence in dictionary:
        drop.add(dictionary.index(silence))
    out = []
    for row, length in zip(best, n):
        ids = torch.unique_consecutive(row[:length]).tolist()
        out.append([i for i in ids if i not in drop])
    return out


@attrs.define(kw_only=True)
class SelectionScore:
    """The unsupervised metric and what it is made of."""

    weighted_lm_ppl: float
    lm_ppl: float
    vocab_usage: float
    predicted_phones: int


def weighted_lm_perplexity(hypotheses: Sequence[Sequence[str]],
                           log10_score: Callable[[str], float], inventory: int,
                           power: float = 2.0) -> SelectionScore:
    """fairseq's ``weighted_lm_ppl`` over phone-string ``hypotheses``.

    Args:
        hypotheses: each utterance's predicted phones (silence already removed).
        log10_score: sentence log10 probability with ``<s>``/``</s>`` (a phone n-gram's
            ``score``).
        inventory: the number of real phones (the dictionary without specials).
        power: ``vocab_usage_power`` (fairseq 2).
    """
    total = sum(log10_score(" ".join(h)) for h in hypotheses)
    predicted = sum(len(h) for h in hypotheses)
    used = len({p for h in hypotheses for p in h})
    usage = used / max(inventory, 1)
    if used == 0:
        return SelectionScore(weighted_lm_ppl=math.inf, lm_ppl=math.inf, vocab_usage=0.0,
                              predicted_phones=0)
    lm_ppl = 10.0 ** (-total / (predicted + len(hypotheses)))
    return SelectionScore(weighted_lm_ppl=lm_ppl / usage ** power, lm_ppl=lm_ppl,
                          vocab_usage=usage, predicted_phones=predicted)


def phone_error_rate(hypotheses: Iterable[Sequence[str]],
                     references: Iterable[Sequence[str]]) -> float:
    """Percent edit distance of phone sequences (silence excluded by the caller)."""
    edits, total = word_edits([" ".join(r) for r in references],
                              [" ".join(h) for h in hypotheses])
    return 100.0 * edits / max(total, 1)
