"""Failures of the machine, not of the code, end in one paragraph and no traceback: an output
or checkpoint folder that cannot be written (found before any compute), an unreadable manifest,
out of memory (how much was asked for and which knob lowers it), a full disk, Ctrl-C in the
middle of a checkpoint save (exit 130, no temporary left), and a ``model.pt`` whose config
disagrees with its tensors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tiny_run import (assert_clean_exit, environment, unprivileged, w2vrun,  # noqa: E402
                      write_corpus, write_recipe)
from trainer_script import toy_config  # noqa: E402
from trainer_toys import ToyDataset, ToyModel, ToyObjective, loader_factory  # noqa: E402
from w2v.errors import ResourceError  # noqa: E402
from w2v.train import Trainer  # noqa: E402


def updates_logged(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return 0
    return sum(json.loads(x).get("split") == "train" for x in metrics.read_text().splitlines())


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_output_directory_not_writable(tmp_path):
    prefix = unprivileged()
    recipe = write_recipe(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    code, _, err = w2vrun(recipe, "--out", locked / "run", prefix=prefix)
    assert_clean_exit(code, err)
    assert str(locked / "run") in err and "permission denied" in err


def test_read_only_checkpoint_folder_is_found_before_any_update(tmp_path):
    prefix = unprivileged()
    recipe = write_recipe(tmp_path, max_updates=4, save_interval=2)
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "pretrain"
    ckpt.mkdir(parents=True)
    ckpt.chmod(0o555)
    code, _, err = w2vrun(recipe, "--out", run, prefix=prefix)
    assert_clean_exit(code, err)
    assert str(ckpt) in err and "permission denied" in err
    assert updates_logged(run) == 0      # no compute spent before the error


def test_unreadable_manifest(tmp_path):
    prefix = unprivileged()
    manifest = write_corpus(tmp_path)
    recipe = write_recipe(tmp_path, manifest)
    manifest.chmod(0o000)
    code, _, err = w2vrun(recipe, "--out", tmp_path / "run", prefix=prefix)
    assert_clean_exit(code, err)
    assert str(manifest) in err and "ermission denied" in err


def test_out_of_memory_in_training_says_how_much_and_which_knob(tmp_path):
    class OversizedAllocation:          # one allocation no machine can satisfy (4 PiB)
        def on_update_start(self, trainer, update):
            if update == 1:
                torch.empty(1 << 50, dtype=torch.float32)

    trainer = Trainer(toy_config(3, 0), ToyModel(), ToyObjective(),
                      loader_factory(ToyDataset(16), batch_size=4), run_dir=tmp_path,
                      stage="pretrain", max_tokens=250_000, callbacks=[OversizedAllocation()],
                      tensorboard=False)
    with pytest.raises(ResourceError) as info:
        trainer.fit()
    text = info.value.render()
    assert "out of CPU memory in stage `pretrain` at update 2" in text
    assert "4.00 PiB" in text
    assert "`data.max_tokens` (now 250,000 samples per batch)" in text
    assert "`data.max_sample_size`" in text and "`trainer.update_freq`" in text


def _too_big_to_allocate(nbytes: int) -> bool:
    """Whether the kernel refuses an ``nbytes`` allocation outright (heuristic overcommit and
    less memory + swap than that), so the test cannot wake the OOM killer."""
    try:
        mode = int(Path("/proc/sys/vm/overcommit_memory").read_text())
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    except (OSError, ValueError):
        return False
    total = sum(int(info[k].split()[0]) * 1024 for k in ("MemTotal", "SwapTotal"))
    return mode in (0, 2) and total < nbytes // 2


def test_out_of_memory_building_a_model_is_one_paragraph(tmp_path):
    asked = 8192 * 8192 * 1024 * 4          # one conv layer's weight: 256 GiB
    if not _too_big_to_allocate(asked):
        pytest.skip("this machine might grant 256 GiB lazily and then meet the OOM killer")
    recipe = write_recipe(tmp_path)
    code, _, err = w2vrun(recipe, "--out", tmp_path / "run",
                          "model.aggregator.layers=[[8192,1,1],[8192,1024,1]]")
    assert_clean_exit(code, err)
    assert "out of CPU memory" in err and "256.00 GiB" in err and "data.max_tokens" in err


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 96 KiB tmpfs: room for the manifest copy and logs, not for checkpoints."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_during_a_checkpoint_save(tmp_path, small_tmpfs):
    recipe = write_recipe(tmp_path, max_updates=4, save_interval=2)
    filler = small_tmpfs / "filler"
    code, _, err = w2vrun(recipe, "--out", small_tmpfs / "run")
    if code == 0:  # the tiny model fit: fill the disk and train again from scratch
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass
        code, _, err = w2vrun(recipe, "--out", small_tmpfs / "run", "--force")
    assert_clean_exit(code, err)
    assert "no space left on the device" in err and str(small_tmpfs / "run") in err
    assert temporaries(small_tmpfs) == []


INTERRUPT_DURING_SAVE = """
import os, signal, sys, torch
from w2v.cli import main

real_save = torch.save
calls = []

class Interrupting:
    '''The checkpoint file: Ctrl-C arrives when 4 KiB of the second checkpoint are written.'''
    def __init__(self, f):
        self.f, self.written = f, 0
    def write(self, data):
        self.written += len(data)
        if self.written > 4096:
            os.kill(os.getpid(), signal.SIGINT)
        return self.f.write(data)
    def __getattr__(self, name):
        return getattr(self.f, name)

def save(obj, f, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2 and hasattr(f, "write"):
        f = Interrupting(f)
    return real_save(obj, f, *args, **kwargs)

torch.save = save
# a process started in the background inherits SIGINT ignored, and Python then leaves it
# so; a terminal's Ctrl-C reaches a foreground process, which this restores
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_a_checkpoint_save_exits_130_and_leaves_no_temporary(tmp_path):
    recipe = write_recipe(tmp_path, max_updates=4, save_interval=2)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", INTERRUPT_DURING_SAVE, str(recipe), "--out",
                           str(run)], capture_output=True, text=True, env=environment(),
                          timeout=180)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "interrupted" in proc.stderr
    ckpt = run / "checkpoints" / "pretrain"
    assert temporaries(run) == []
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.pt", "update_2.pt"]
    assert not (run / "pretrain" / "DONE").exists()
    from w2v.train.checkpoint import load_checkpoint
    assert load_checkpoint(ckpt / "last.pt")["trainer"]["num_updates"] == 2


def test_model_file_whose_config_disagrees_with_its_tensors(tmp_path):
    recipe = write_recipe(tmp_path)
    run = tmp_path / "run"
    code, _, err = w2vrun(recipe, "--out", run)
    assert code == 0, err
    blob = torch.load(run / "pretrain" / "model.pt", weights_only=True)
    blob["model_config"]["encoder"]["layers"][0][0] = 24      # the config says 24 channels
    edited = tmp_path / "edited.pt"
    torch.save(blob, edited)
    code, _, err = w2vrun("featurize", edited, tmp_path / "train.tsv", "--out", tmp_path / "f")
    assert_clean_exit(code, err)
    assert str(edited) in err
    assert "encoder.blocks.0.conv.weight (file (16, 1, 10), config (24, 1, 10))" in err
