"""Exact resume after SIGKILL, and checkpoints that survive a kill during the write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from trainer_script import run_training  # noqa: E402
from w2v.train import load_checkpoint  # noqa: E402

SCRIPT = HERE / "trainer_script.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def _read_until(proc: subprocess.Popen, prefix: str, count: int, timeout: float = 60.0) -> int:
    """Read stdout lines until ``prefix N`` with N >= count; returns N."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"process ended early: {proc.stderr.read()[-2000:]}")
        if line.startswith(prefix) and int(line.split()[1]) >= count:
            return int(line.split()[1])
    raise AssertionError(f"no `{prefix} {count}` within {timeout} s")


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    """With a prefetching loader worker, so the data position must count consumed batches."""
    total, every, workers = 24, 4, 1
    # the uninterrupted run, in this process
    reference = run_training(str(tmp_path / "ref"), total, every, workers=workers).model
    # a run killed mid-training (after the checkpoint of update 8, before the end)
    run_dir = tmp_path / "run"
    proc = _start("train", "--dir", str(run_dir), "--max-updates", str(total),
                  "--save-interval", str(every), "--workers", str(workers), "--sleep", "0.03")
    seen = _read_until(proc, "update", 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["trainer"]["num_updates"]
    assert every <= killed_at < total and killed_at % every == 0 and seen < total
    # resume in a new process: it continues from last.pt and finishes
    out = subprocess.run([sys.executable, str(SCRIPT), "train", "--dir", str(run_dir),
                          "--max-updates", str(total), "--save-interval", str(every),
                          "--workers", str(workers)],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"resumed_from {killed_at}" in out.stdout
    assert f"done {total}" in out.stdout
    resumed = torch.load(run_dir / "final_model.pt")
    for name, p in reference.state_dict().items():
        assert torch.equal(p, resumed[name]), name
    # and the optimizer really moved the weights (the comparison is not vacuous)
    torch.manual_seed(1234)
    from trainer_toys import ToyModel
    init = ToyModel(dropout=0.2).state_dict()
    assert not torch.equal(init["aggregator.conv.weight"], resumed["aggregator.conv.weight"])


def test_resumed_data_position_skips_consumed_not_prefetched(tmp_path):
    """With a prefetching worker, the saved position counts consumed batches only."""
    trainer = run_training(str(tmp_path / "a"), 6, 3, workers=1)
    state = load_checkpoint(tmp_path / "a" / "checkpoints" / "update_6.pt")
    # 48 utterances / 4 per batch = 12 batches per epoch; 6 consumed
    assert state["data"] == {"epoch": 0, "consumed": 6,
                             "sampler": {"epoch": 0, "consumed": 6}}
    assert trainer.num_updates == 6


def test_kill_during_save_leaves_a_loadable_checkpoint(tmp_path):
    proc = _start("save-loop", "--dir", str(tmp_path))
    try:
        _read_until(proc, "saved", 2)
        time.sleep(0.15)  # land somewhere inside a later write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["weights"].numel() == 4 * 1024 * 1024
    assert state["n"] >= 2
    periodic = sorted(tmp_path.glob("update_*.pt"))
    assert 1 <= len(periodic) <= 3  # keep_last 2, plus possibly one just renamed in
    for p in periodic:
        assert load_checkpoint(p)["n"] == int(p.stem.split("_")[1])
