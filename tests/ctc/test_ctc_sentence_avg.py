"""CTC `sentence_avg` (fairseq criterions/ctc.py): the summed loss is normalised by utterances
instead of target tokens; fairseq's fine-tuning recipes (and w2v's recipes/finetune) use it."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from ctc_synthetic import letters, make_batch, tiny_model  # noqa: F401

from w2v.plugins.ctc.objective import CTCConfig, CTCObjective

ROOT = Path(__file__).resolve().parents[2]


def test_sample_size_is_tokens_by_default_and_sentences_with_sentence_avg(letters):
    torch.manual_seed(0)
    model = tiny_model(len(letters)).eval()
    batch = make_batch(letters, ["T E N |", "A | O |", "E |"], torch.Generator().manual_seed(2))
    tokens = CTCObjective(CTCConfig(apply_mask=False, wer_valid=False), letters)(batch, model, 0)
    sentences = CTCObjective(CTCConfig(apply_mask=False, wer_valid=False, sentence_avg=True),
                             letters)(batch, model, 0)
    assert int(tokens.sample_size) == 10 and int(sentences.sample_size) == 3
    torch.testing.assert_close(sentences.loss, tokens.loss)         # the sum is the same
    assert int(sentences.stats["n_tokens"]) == 10 and sentences.stats["n_sentences"] == 3


def test_finetune_recipes_use_fairseqs_sentence_avg():
    for path in sorted((ROOT / "recipes" / "finetune").glob("*.yaml")):
        recipe = yaml.safe_load(path.read_text())
        assert recipe["stages"]["finetune"]["objective"]["sentence_avg"] is True, path.name
