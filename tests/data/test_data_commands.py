"""`w2vrun manifest` and `w2vrun labels` through the real CLI and plugin registry."""

import os

from w2v.cli import main
from w2v.data.dictionary import Dictionary
from w2v.data.manifest import read_manifest


def test_manifest_command_writes_train_and_valid(corpus, tmp_path, capsys):
    for i in range(6):
        corpus.audio(f"spk/u{i}.flac", n=400 + i)
    dest = str(tmp_path / "m")
    assert main(["manifest", corpus.root, "--dest", dest, "--ext", "flac",
                 "--valid-percent", "0.5", "--seed", "1"]) == 0
    train, valid = read_manifest(f"{dest}/train.tsv"), read_manifest(f"{dest}/valid.tsv")
    assert len(train) + len(valid) == 6
    assert "train:" in capsys.readouterr().out


def test_manifest_command_errors_exit_2_without_traceback(corpus, tmp_path, capsys):
    assert main(["manifest", str(tmp_path / "absent"), "--dest", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    corpus.audio("x.wav")
    assert main(["manifest", corpus.root, "--dest", str(tmp_path), "--ext", "flac"]) == 2
    assert "no audio files" in capsys.readouterr().err
    assert main(["manifest", corpus.root]) == 2  # --dest is required


def test_labels_command_orders_labels_like_the_manifest(corpus, tmp_path):
    manifest = corpus.manifest("train.tsv", [("a/2.flac", 10), ("a/1.flac", 10)])
    table = corpus.labels("text.tsv", ["1\thello world", "2\tbye"])
    prefix = os.path.join(corpus.root, "train")
    assert main(["labels", table, "--dest", prefix, "--manifest", manifest]) == 0
    assert open(prefix + ".ltr").read() == "B Y E |\nH E L L O | W O R L D |\n"
    assert open(prefix + ".wrd").read() == "BYE\nHELLO WORLD\n"
    d = Dictionary.load(os.path.join(corpus.root, "dict.ltr.txt"))
    assert d.symbols[4:8] == ["L", "|", "E", "O"]  # by count (3, 3, 2, 2), ties by symbol


def test_labels_command_reports_a_missing_transcript(corpus, capsys):
    manifest = corpus.manifest("train.tsv", [("a/1.flac", 10), ("a/3.flac", 10)])
    table = corpus.labels("text.tsv", ["1\thello"])
    assert main(["labels", table, "--dest", corpus.root + "/x", "--manifest", manifest]) == 2
    err = capsys.readouterr().err
    assert f"{manifest}:3" in err and "`3`" in err
