"""Word and character error rates (jiwer), per-utterance error records, and a check for
the degenerate output of a CTC model that has not learned (all blank, one repeated answer).

Rates are fractions (0.25 = 25 %); totals are reference words / characters
(spaces count as characters, as jiwer counts them).
"""

from __future__ import annotations

from typing import Sequence

import attrs
import jiwer


def word_edits(refs: Sequence[str], hyps: Sequence[str]) -> tuple[int, int]:
    """``(edits, reference words)`` summed over the pairs."""
    out = jiwer.process_words(list(refs), list(hyps))
    return (out.substitutions + out.deletions + out.insertions,
            out.substitutions + out.deletions + out.hits)


def char_edits(refs: Sequence[str], hyps: Sequence[str]) -> tuple[int, int]:
    """``(edits, reference characters)`` summed over the pairs."""
    out = jiwer.process_characters(list(refs), list(hyps))
    return (out.substitutions + out.deletions + out.insertions,
            out.substitutions + out.deletions + out.hits)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: edits over reference words."""
    return _rate(*word_edits(refs, hyps))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate: edits over reference characters."""
    return _rate(*char_edits(refs, hyps))


def token_errors(refs: Sequence[Sequence[int]], hyps: Sequence[Sequence[int]]) -> int:
    """Summed edit distance between id sequences (fairseq's unit errors of CTC validation)."""
    return word_edits([" ".join(map(str, r)) for r in refs],
                      [" ".join(map(str, h)) for h in hyps])[0]


@attrs.frozen(kw_only=True)
class UtteranceErrors:
    """Errors of one hypothesis against its reference."""

    ref: str
    hyp: str
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int
    char_errors: int
    ref_chars: int

    @property
    def word_errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


def utterance_errors(refs: Sequence[str], hyps: Sequence[str]) -> list[UtteranceErrors]:
    """Word substitutions / deletions / insertions and character errors of each pair."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    words = jiwer.process_words(list(refs), list(hyps))
    chars = jiwer.process_characters(list(refs), list(hyps))
    records = []
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        w = _counts(words.alignments[i])
        c = _counts(chars.alignments[i])
        records.append(UtteranceErrors(
            ref=ref, hyp=hyp, substitutions=w["substitute"], deletions=w["delete"],
            insertions=w["insert"], ref_words=w["substitute"] + w["delete"] + w["equal"],
            char_errors=c["substitute"] + c["delete"] + c["insert"],
            ref_chars=c["substitute"] + c["delete"] + c["equal"]))
    return records


def check_not_degenerate(hyps: Sequence[str]) -> str | None:
    """A warning when the hypotheses look like an untrained CTC model's, else None.

    Flags all-empty output (the model emits only blanks: WER stuck at 100 %) and,
    for two or more hypotheses, one identical answer for every utterance.
    """
    if not hyps:
        return None
    texts = [" ".join(h.split()) for h in hyps]
    causes = ("Usual causes: too few updates for the learning rate (the model first "
              "learns to emit only blanks; raise `trainer.max_updates`), `trainer.freeze` or "
              "`trainer.freeze_updates` covering all of training, a `trainer.lr` too high or "
              "too low, a dictionary that does not match the labels or the checkpoint's head.")
    if not any(texts):
        return (f"all {len(texts)} hypotheses are empty: the model emits only blanks. "
                + causes)
    if len(texts) > 1 and len(set(texts)) == 1:
        return (f"all {len(texts)} hypotheses are the same text ({texts[0][:60]!r}): the "
                "model ignores its input. " + causes)
    return None


def _counts(chunks) -> dict[str, int]:
    n = {"equal": 0, "substitute": 0, "delete": 0, "insert": 0}
    for c in chunks:
        n[c.type] += max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
    return n


def _rate(errors: int, total: int) -> float:
    if total == 0:
        return 0.0 if errors == 0 else float("inf")
    return errors / total
