"""``data.bad_input: skip`` does not train on nothing: a manifest whose audio root is gone, or
whose files are mostly broken, stops with exit 2 (``data.max_skipped``, default 10 %), and
missing files are counted exactly, before training, however few updates run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tiny_run import assert_clean_exit, w2vrun, write_corpus, write_recipe  # noqa: E402
from w2v.cli import main  # noqa: E402

SKIP = "data.bad_input=skip"


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_manifest_whose_audio_root_is_gone_stops_before_training(tmp_path):
    manifest = write_corpus(tmp_path)
    gone = tmp_path / "moved-away"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([str(gone)] + lines[1:]) + "\n")
    recipe = write_recipe(tmp_path, manifest)
    code, _, err = w2vrun(recipe, "--out", tmp_path / "run", SKIP)
    assert_clean_exit(code, err)
    assert "none of the 8 utterances" in err and "8 missing" in err
    assert f"audio root `{gone}`" in err
    assert not (tmp_path / "run" / "pretrain" / "DONE").exists()
    assert not (tmp_path / "run" / "pretrain" / "model.pt").exists()


def test_mostly_broken_files_found_while_reading_stop_the_run(tmp_path, capsys):
    manifest = write_corpus(tmp_path)
    for i in (1, 4, 6):                              # 3 of 8 exist but are not audio
        (tmp_path / "audio" / f"u{i}.wav").write_bytes(b"RIFF not really a wave file")
    recipe = write_recipe(tmp_path, manifest, max_updates=50)
    code, text = run(capsys, recipe, "--out", tmp_path / "run", SKIP)
    assert code == 2, text
    assert "of the 8 utterances" in text and "more than `data.max_skipped` allows (10%)" in text
    assert "unreadable" in text and "raise `data.max_skipped`" in text
    assert not (tmp_path / "run" / "pretrain" / "DONE").exists()

    # the user may accept the loss explicitly
    code, text = run(capsys, recipe, "--out", tmp_path / "run2", SKIP, "data.max_skipped=0.5")
    assert code == 0, text
    skipped = (tmp_path / "run2" / "pretrain" / "skipped.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[1] for line in skipped) == ["3", "6", "8"]


@pytest.mark.parametrize("max_updates", [1, 2])
def test_missing_files_are_counted_exactly_however_few_updates_run(tmp_path, capsys, caplog,
                                                                   max_updates):
    manifest = write_corpus(tmp_path, n=20)
    (tmp_path / "audio" / "u3.wav").unlink()         # 1 of 20 (5 %): within the default budget
    recipe = write_recipe(tmp_path, manifest, max_updates=max_updates)
    code, text = run(capsys, recipe, "--out", tmp_path / "run", SKIP)
    assert code == 0, text
    assert "skipped 1 input (1 missing)" in caplog.text
    [row] = (tmp_path / "run" / "pretrain" / "skipped.tsv").read_text().splitlines()[1:]
    assert row.split("\t")[1:4] == ["5", str(tmp_path / "audio" / "u3.wav"), "missing"]

    (tmp_path / "audio" / "u7.wav").unlink()          # 2 of 20 (10 %): still not more than 10 %
    (tmp_path / "audio" / "u8.wav").unlink()          # 3 of 20 (15 %): too many
    code, text = run(capsys, recipe, "--out", tmp_path / "run3", SKIP)
    assert code == 2
    assert "3 of the 20 utterances" in text and "(15%)" in text and "3 missing" in text


def test_all_bad_with_no_limit_still_refuses_to_train_on_nothing(tmp_path, capsys):
    manifest = write_corpus(tmp_path)
    for i in range(8):
        (tmp_path / "audio" / f"u{i}.wav").write_bytes(b"not audio")
    recipe = write_recipe(tmp_path, manifest)
    code, text = run(capsys, recipe, "--out", tmp_path / "run", SKIP, "data.max_skipped=1.0")
    assert code == 2, text
    assert "nothing to train on" in text or "none of the 8 utterances" in text
    assert not (tmp_path / "run" / "pretrain" / "model.pt").exists()
