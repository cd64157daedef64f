"""Labels: fairseq letter format, dictionaries, alignment with the manifest."""

import pytest

from w2v.data.dictionary import Dictionary
from w2v.data.labels import (align_transcripts, encode_labels, letters, read_label_lines,
                             read_transcripts, write_labels)
from w2v.data.manifest import read_manifest
from w2v.errors import DataError


def test_letters_match_fairseq_libri_labels():
    assert letters("the cat") == "T H E | C A T |"
    assert letters("  don't   stop ") == "D O N ' T | S T O P |"


def test_write_labels_writes_wrd_ltr_and_a_count_sorted_dictionary(tmp_path):
    prefix = str(tmp_path / "out" / "train")
    paths = write_labels([("u1", "the cat"), ("u2", "a tee")], prefix)
    assert open(paths["wrd"]).read() == "THE CAT\nA TEE\n"
    assert open(paths["ltr"]).read() == "T H E | C A T |\nA | T E E |\n"
    rows = [line.split() for line in open(paths["dict"]).read().splitlines()]
    counts = {s: int(n) for s, n in rows}
    assert counts == {"|": 4, "T": 3, "E": 3, "A": 2, "H": 1, "C": 1}
    assert [int(n) for _, n in rows] == sorted(counts.values(), reverse=True)
    assert paths["dict"] == str(tmp_path / "out" / "dict.ltr.txt")
    d = Dictionary.load(paths["dict"])
    line = open(paths["ltr"]).read().splitlines()[0]
    assert d.string(d.encode(line.split())) == line
    assert d.index(rows[0][0]) == 4  # most frequent symbol gets the first non-special id


def test_write_labels_can_leave_the_dictionary_alone(tmp_path):
    paths = write_labels([("u", "x")], str(tmp_path / "valid"), dictionary=False)
    assert "dict" not in paths and not (tmp_path / "dict.ltr.txt").exists()


def _manifest(corpus, n):
    return read_manifest(corpus.manifest("train.tsv", [(f"s/u{i}.flac", 100) for i in range(n)]))


def test_label_count_mismatch_names_both_files_and_counts(corpus):
    m = _manifest(corpus, 3)
    path = corpus.labels("train.ltr", ["A |", "B |"])
    with pytest.raises(DataError) as err:
        read_label_lines(path, m)
    text = str(err.value)
    assert path in text and m.path in text and "2 lines" in text and "3 utterances" in text


def test_unknown_symbols_are_reported_with_line_and_symbol(corpus):
    m = _manifest(corpus, 3)
    path = corpus.labels("train.ltr", ["A B |", "A Q |", "B |"])
    lines = read_label_lines(path, m)
    tokens, offsets, bad = encode_labels(lines, Dictionary.from_symbols(["|", "A", "B"]), path, m)
    assert list(bad) == [1]
    assert bad[1].where == f"{path}:2" and "`Q`" in bad[1].detail
    assert bad[1].reason == "unknown-symbol"
    assert tokens[offsets[0]:offsets[1]].tolist() == [5, 6, 4]
    assert tokens[offsets[2]:offsets[3]].tolist() == [6, 4]
    assert offsets[1] == offsets[2]  # the bad row encodes to nothing


def test_align_transcripts_orders_like_the_manifest(corpus):
    m = read_manifest(corpus.manifest("m.tsv", [("s/b.flac", 5), ("s/a.flac", 5)]))
    table = corpus.labels("t.tsv", ["a\tfirst", "b\tsecond"])
    rows = align_transcripts(read_transcripts(table), m)
    assert rows == [("b", "second"), ("a", "first")]
    m2 = read_manifest(corpus.manifest("m2.tsv", [("s/c.flac", 5)]))
    with pytest.raises(DataError) as err:
        align_transcripts(read_transcripts(table), m2)
    assert err.value.where == f"{m2.path}:2" and "`c`" in err.value.message


@pytest.mark.parametrize("lines, line", [(["a\tx", "b no tab"], 2), (["a\tx", "a\ty"], 2)])
def test_malformed_transcript_tables(corpus, lines, line):
    path = corpus.labels("t.tsv", lines)
    with pytest.raises(DataError) as err:
        read_transcripts(path)
    assert err.value.where == f"{path}:{line}"
