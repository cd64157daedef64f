"""Label dictionaries: fairseq dict.ltr.txt files (ids, round trip, overwrite flag) and
Hugging Face CTC vocabularies (checked against a real Wav2Vec2CTCTokenizer)."""

from __future__ import annotations

import json

import pytest
import torch

from w2v.data.dictionary import Dictionary, letters_to_words
from w2v.errors import DataError

# the head of fairseq's LibriSpeech dict.ltr.txt, as libri_labels.py + fairseq-preprocess write it
FAIRSEQ_DICT = """\
| 94802
E 51860
T 38431
A 33152
O 31495
N 28855
I 28317
H 27187
S 26071
R 23546
' 1000
"""


@pytest.fixture
def dict_file(tmp_path):
    path = tmp_path / "dict.ltr.txt"
    path.write_text(FAIRSEQ_DICT)
    return path


def test_fairseq_ids_follow_specials_then_file_order(dict_file):
    d = Dictionary.load(dict_file)
    assert d.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (d.blank, d.bos, d.pad, d.eos, d.unk) == (0, 0, 1, 2, 3)
    assert d.index("|") == 4 and d.index("E") == 5 and d.index("'") == 14
    assert len(d) == 4 + len(FAIRSEQ_DICT.splitlines())
    assert d.counts[4] == 94802
    assert "Q" not in d and d.index("Q") == d.unk
    assert d.word_boundary == "|"


def test_save_round_trip_is_byte_identical(dict_file, tmp_path):
    out = tmp_path / "again.txt"
    Dictionary.load(dict_file).save(out)
    assert out.read_text() == FAIRSEQ_DICT
    assert Dictionary.load(out).symbols == Dictionary.load(dict_file).symbols


def test_encode_string_and_words(dict_file):
    d = Dictionary.load(dict_file)
    line = "T H E | C A T |"
    ids = d.encode(line.split())
    assert ids[:4] == [d.index("T"), d.index("H"), d.index("E"), 4]
    assert ids[4] == d.unk                                   # C is not in the short dictionary
    with pytest.raises(DataError, match="'C'"):
        d.encode(line.split(), strict=True)
    # blanks, pad and eos never reach the text; tensors work as ids
    ids = torch.tensor([d.blank, d.index("T"), d.pad, d.index("O"), 4, d.index("A"), d.eos, 4])
    assert d.string(ids) == "T O | A |"
    assert d.words(ids) == "TO A"
    assert letters_to_words("T H E | C A T |") == "THE CAT"
    assert letters_to_words("| A | | B |") == "A B"
    phones = Dictionary.from_symbols(["AH", "B", "K"])                 # no word boundary
    assert phones.words(phones.encode(["K", "AH", "B"])) == "K AH B"


def test_overwrite_flag_gives_a_new_id_and_survives_saving(tmp_path):
    path = tmp_path / "dict.txt"
    path.write_text("a 5\n<unk> 3 #fairseq:overwrite\nb 2\na 7 #fairseq:overwrite\n")
    d = Dictionary.load(path)
    assert d.symbols[4:] == ["a", "<unk>", "b", "a"]
    assert d.index("a") == 7 and d.index("<unk>") == 5      # later rows win, as in fairseq
    out = tmp_path / "out.txt"
    d.save(out)
    assert out.read_text() == path.read_text()


@pytest.mark.parametrize("text, match", [
    ("E 5\nE 6\n", "repeats an earlier row"),
    ("<s> 1\n", "repeats a special symbol"),
    ("E\n", "expected `symbol count"),
    ("E five\n", "expected `symbol count"),
])
def test_malformed_files_name_the_line(tmp_path, text, match):
    path = tmp_path / "dict.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as err:
        Dictionary.load(path)
    assert f"{path}:{len(text.splitlines())}" in str(err.value)


def test_from_symbols_matches_loading_the_same_file(dict_file):
    syms = [line.split()[0] for line in FAIRSEQ_DICT.splitlines()]
    assert Dictionary.from_symbols(syms).symbols == Dictionary.load(dict_file).symbols
    with pytest.raises(DataError, match="twice"):
        Dictionary.from_symbols(["A", "B", "A"])


def test_hf_vocab_matches_the_transformers_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7,
             "O": 8, "N": 9, "H": 10, "C": 11}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tok = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    d = Dictionary.from_hf_vocab(tok.get_vocab())
    assert d.blank == tok.pad_token_id == 0
    assert (d.pad, d.bos, d.eos, d.unk) == (0, 1, 2, 3)
    for sym in ["|", "E", "C", "<unk>", "Z"]:
        assert d.index(sym) == tok.convert_tokens_to_ids(sym)
    # a greedy CTC path, blanks (pad) and repeats collapsed, decodes like the tokenizer
    path = [0, 6, 6, 0, 10, 5, 4, 4, 11, 7, 0, 6, 4]
    collapsed = [t for i, t in enumerate(path) if t != 0 and (i == 0 or path[i - 1] != t)]
    assert d.words(collapsed) == tok.decode(path) == "THE CAT"


def test_hf_vocab_errors():
    with pytest.raises(DataError, match="without gaps"):
        Dictionary.from_hf_vocab({"<pad>": 0, "<unk>": 2})
    with pytest.raises(DataError, match="no `<unk>`"):
        Dictionary.from_hf_vocab({"<pad>": 0, "A": 1})
    with pytest.raises(DataError, match="fairseq layout"):
        Dictionary.from_hf_vocab({"<pad>": 0, "<unk>": 1}).save("/nonexistent/never")
