"""WER/CER, per-utterance errors, unit errors and the degenerate-output check."""

from __future__ import annotations

import pytest

from w2v.plugins.ctc.metrics import (cer, check_not_degenerate, token_errors,
                                     utterance_errors, wer)


def test_wer_and_cer_count_edits_over_reference_length():
    refs = ["THE CAT SAT", "A DOG"]
    hyps = ["THE BAT SAT DOWN", ""]
    # 1 substitution + 1 insertion, then 2 deletions, over 5 reference words
    assert wer(refs, hyps) == pytest.approx(4 / 5)
    assert cer(["ABCD"], ["ABD"]) == pytest.approx(1 / 4)
    assert wer(["A B"], ["A B"]) == 0.0


def test_utterance_errors_split_substitutions_deletions_insertions():
    recs = utterance_errors(["THE CAT SAT", "A DOG", "X"], ["THE BAT SAT DOWN", "", "X"])
    assert [(r.substitutions, r.deletions, r.insertions, r.ref_words) for r in recs] == \
        [(1, 0, 1, 3), (0, 2, 0, 2), (0, 0, 0, 1)]
    assert recs[0].word_errors == 2
    assert (recs[0].char_errors, recs[0].ref_chars) == (6, 11)   # C->B, then " DOWN"
    assert recs[1].hyp == "" and recs[1].char_errors == 5
    with pytest.raises(ValueError):
        utterance_errors(["A"], [])


def test_token_errors_are_edit_distances_of_id_sequences():
    assert token_errors([[4, 5, 6], [7]], [[4, 6], [7, 7, 8]]) == 1 + 2
    assert token_errors([[1, 2]], [[]]) == 2


def test_check_not_degenerate():
    assert "empty" in check_not_degenerate(["", " ", ""])
    assert "same text" in check_not_degenerate(["THE", "THE ", "THE"])
    assert check_not_degenerate(["THE", "A"]) is None
    assert check_not_degenerate(["ONLY ONE"]) is None
    assert check_not_degenerate([]) is None
