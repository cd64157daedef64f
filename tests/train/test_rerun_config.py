"""Reruns that cannot mix or hide runs: a stage started from scratch moves its old checkpoints
aside; a finished stage rerun with another config stops naming the keys (speed, logging and
interval keys excepted); a resume with changed hyperparameters names and records them."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tiny_run import write_recipe  # noqa: E402
from w2v.cli import main  # noqa: E402

WIDER = "model.encoder.layers=[[24,10,5],[24,8,4],[24,4,2]]"


def w2vrun(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_force_moves_the_old_checkpoints_aside_instead_of_mixing_them(tmp_path, capsys):
    recipe, out = write_recipe(tmp_path, max_updates=6, save_interval=2), tmp_path / "run"
    assert w2vrun(capsys, recipe, "--out", out)[0] == 0
    ckpt = out / "checkpoints" / "pretrain"
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.pt", "update_4.pt", "update_6.pt"]

    # another architecture, fewer updates: nothing of the first run may stay among its files
    code, text = w2vrun(capsys, recipe, "--out", out, "--force", WIDER, "trainer.max_updates=2")
    assert code == 0, text
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.pt", "update_2.pt"]
    [old] = [p for p in ckpt.parent.iterdir() if p.name.startswith("pretrain.old-")]
    assert sorted(p.name for p in old.iterdir()) == ["last.pt", "update_4.pt", "update_6.pt"]
    assert f"moved to {old}" in text
    weights = __import__("torch").load(ckpt / "last.pt")["model"]
    assert weights["encoder.blocks.0.conv.weight"].shape[0] == 24

    # --no-resume on an unfinished stage: the same (nothing resumed, nothing deleted)
    (out / "pretrain" / "DONE").unlink()
    code, text = w2vrun(capsys, recipe, "--out", out, "--no-resume", WIDER,
                        "trainer.max_updates=2")
    assert code == 0, text
    assert len([p for p in ckpt.parent.iterdir() if p.name.startswith("pretrain.old-")]) == 2
    assert "resumed from" not in text


def test_rerun_of_a_finished_stage_with_another_config_exits_2_naming_the_keys(tmp_path, capsys):
    recipe, out = write_recipe(tmp_path), tmp_path / "run"
    assert w2vrun(capsys, recipe, "--out", out)[0] == 0
    trained = (out / "pretrain" / "resolved.yaml").read_text()
    assert yaml.safe_load(trained)["trainer"]["lr"] == 1e-3

    code, text = w2vrun(capsys, recipe, "--out", out, "trainer.lr=0.002", "trainer.seed=7")
    assert code == 2
    assert "stages.pretrain.trainer.lr: 0.001 -> 0.002" in text
    assert "stages.pretrain.trainer.seed: 1 -> 7" in text and "--force" in text
    # nothing claims the new config trained: both records still say what did
    assert yaml.safe_load((out / "resolved.yaml").read_text())["stages"]["pretrain"]["trainer"][
        "lr"] == 1e-3
    assert (out / "pretrain" / "resolved.yaml").read_text() == trained

    # keys that do not change the result are not compared
    code, text = w2vrun(capsys, recipe, "--out", out, "data.num_workers=1", "trainer.device=auto",
                        "trainer.log_interval=5", "trainer.save_interval=3",
                        "trainer.valid_interval=9", "trainer.num_threads=2")
    assert code == 0 and "already done" in text, text

    code, text = w2vrun(capsys, recipe, "--out", out, "trainer.lr=0.002", "--force")
    assert code == 0, text
    assert yaml.safe_load((out / "pretrain" / "resolved.yaml").read_text())["trainer"]["lr"] == \
        0.002


def test_resume_with_changed_hyperparameters_names_and_records_them(tmp_path, capsys, caplog):
    recipe, out = write_recipe(tmp_path, max_updates=2, save_interval=2), tmp_path / "run"
    assert w2vrun(capsys, recipe, "--out", out)[0] == 0
    (out / "pretrain" / "DONE").unlink()            # as if stopped after its last checkpoint
    with caplog.at_level(logging.WARNING, logger="w2v"):
        code, text = w2vrun(capsys, recipe, "--out", out, "trainer.max_updates=4",
                            "trainer.lr=0.002", "data.max_tokens=24000", "trainer.log_interval=2")
    assert code == 0, text
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    for change in ("trainer.lr: 0.001 -> 0.002", "trainer.max_updates: 2 -> 4",
                   "data.max_tokens: 32000 -> 24000"):
        assert change in warning
    assert "log_interval" not in warning
    [line] = (out / "pretrain" / "config_changes.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["changes"]["trainer.lr"] == [0.001, 0.002]
    assert record["resumed_from"].endswith("last.pt")
    assert set(record["changes"]) == {"trainer.lr", "trainer.max_updates", "data.max_tokens"}
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m.get("split") == "train"][-1] == 4
