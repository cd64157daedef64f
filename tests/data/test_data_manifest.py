"""fairseq manifests: round trip, hand-written files, malformed lines, making them."""

import os
import random

import pytest
import soundfile as sf

from w2v.data.manifest import read_manifest, write_manifest, write_manifests
from w2v.errors import DataError


def test_reads_a_hand_written_fairseq_manifest(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("/data/LibriSpeech/train-clean-100\n"
                    "103/1240/103-1240-0000.flac\t225360\n"
                    "103/1240/103-1240-0001.flac\t255120\n")
    m = read_manifest(str(path))
    assert m.root == "/data/LibriSpeech/train-clean-100"
    assert len(m) == 2 and m.sizes.tolist() == [225360, 255120]
    assert m.relpath(1) == "103/1240/103-1240-0001.flac"
    assert m.audio_path(0) == "/data/LibriSpeech/train-clean-100/103/1240/103-1240-0000.flac"
    assert m.where(1) == f"{path}:3"


def test_write_then_read_round_trip(tmp_path):
    rows = [("a/x.flac", 16000), ("b/ü y.wav", 1)]
    path = str(tmp_path / "m.tsv")
    assert write_manifest(path, "/root dir", rows) == 2
    m = read_manifest(path)
    assert m.root == "/root dir" and m.entries() == rows


@pytest.mark.parametrize("body, line, words", [
    ("a.wav\t10\textra\n", 2, "found 3"),
    ("a.wav\t10\nb.wav 20\n", 3, "found 1"),
    ("a.wav\tten\n", 2, "integer"),
    ("a.wav\t-5\n", 2, ">= 0"),
    ("a.wav\t10\n\nb.wav\t3\n", 3, "found 1"),
])
def test_malformed_lines_name_file_and_line(tmp_path, body, line, words):
    path = tmp_path / "bad.tsv"
    path.write_text("/root\n" + body)
    with pytest.raises(DataError) as err:
        read_manifest(str(path))
    assert err.value.where == f"{path}:{line}"
    assert words in err.value.message


def test_missing_root_line_and_missing_file(tmp_path):
    path = tmp_path / "noroot.tsv"
    path.write_text("a.wav\t10\n")
    with pytest.raises(DataError) as err:
        read_manifest(str(path))
    assert err.value.where == f"{path}:1"
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(str(tmp_path / "absent.tsv"))


def test_trailing_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("/root\na.wav\t10\n\n\n")
    assert len(read_manifest(str(path))) == 1


def test_write_manifests_splits_like_wav2vec_manifest(corpus, tmp_path):
    names = [f"spk{i % 3}/utt{i}.{'flac' if i % 2 else 'wav'}" for i in range(12)]
    for i, n in enumerate(names):
        corpus.audio(n, n=100 + i)
    corpus.audio("notes/readme.ogg", n=50)  # other extension: ignored
    dest = str(tmp_path / "manifests")
    written = write_manifests(corpus.root, dest, exts=["flac", "wav"], valid_percent=0.3, seed=7)
    train, valid = read_manifest(written["train"]), read_manifest(written["valid"])
    assert train.root == valid.root == os.path.realpath(corpus.root)
    # fairseq rule: one Random(seed) draw per file, in (here: sorted) path order
    rng = random.Random(7)
    expected = {"train": [], "valid": []}
    for rel in sorted(names, key=lambda r: os.path.join(os.path.realpath(corpus.root), r)):
        expected["train" if rng.random() > 0.3 else "valid"].append(rel)
    assert [r for r, _ in train.entries()] == expected["train"]
    assert [r for r, _ in valid.entries()] == expected["valid"]
    for m in (train, valid):
        for i in range(len(m)):
            assert m.sizes[i] == sf.info(m.audio_path(i)).frames
    again = write_manifests(corpus.root, str(tmp_path / "again"), exts=["flac", "wav"],
                            valid_percent=0.3, seed=7)
    assert open(again["train"]).read() == open(written["train"]).read()


def test_write_manifests_without_valid_and_errors(corpus, tmp_path):
    corpus.audio("a.flac")
    written = write_manifests(corpus.root, str(tmp_path / "m"), valid_percent=0.0)
    assert list(written) == ["train"] and len(read_manifest(written["train"])) == 1
    with pytest.raises(DataError, match="does not exist"):
        write_manifests(str(tmp_path / "nope"), str(tmp_path / "m"))
    with pytest.raises(DataError, match="no audio files"):
        write_manifests(corpus.root, str(tmp_path / "m"), exts=["mp3"])
