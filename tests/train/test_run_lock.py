"""One job per run directory: a second ``w2vrun`` on a busy ``--out`` exits 2 naming the
holder's pid, a SIGKILLed holder leaves no stale lock, torchrun ranks share the directory, and a
checkpoint save removes only its own (or dead processes') temporaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tiny_run import (assert_clean_exit, environment, w2vrun, w2vrun_command,  # noqa: E402
                      write_recipe)
from w2v.run_lock import LOCK_FILE, RunDirectoryBusy, RunLock, read_holder  # noqa: E402
from w2v.train.checkpoint import CheckpointDirectory  # noqa: E402

HOLD = "import sys, time; from w2v.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); " \
       "print('locked', flush=True); time.sleep(600)"


def _wait_for(condition, timeout: float = 90.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_second_w2vrun_on_a_busy_run_directory_exits_2_and_a_killed_holder_leaves_no_lock(
        tmp_path):
    recipe = write_recipe(tmp_path, max_updates=100_000, save_interval=50_000)
    out = tmp_path / "run"
    first = subprocess.Popen([*w2vrun_command(), str(recipe), "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment())
    try:
        metrics = out / "metrics.jsonl"
        _wait_for(lambda: first.poll() is not None or (metrics.exists() and
                                                       metrics.read_text().count("\n") >= 2),
                  what="the first run's updates")
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert read_holder(out)["pid"] == first.pid

        code, _, err = w2vrun(recipe, "--out", out)
        assert_clean_exit(code, err)
        assert f"pid {first.pid}" in err and str(out) in err and "--out" in err
        assert first.poll() is None  # the first run goes on undisturbed
        trained = metrics.read_text().count("\n")
        _wait_for(lambda: metrics.read_text().count("\n") > trained, what="more updates")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # the kernel dropped the lock with the process: another job gets it at once
    probe = subprocess.run([sys.executable, "-c", "import sys; from w2v.run_lock import RunLock; "
                            "RunLock(sys.argv[1]).acquire(); print('ok')", str(out)],
                           capture_output=True, text=True, env=environment(), timeout=60)
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr


def test_only_rank_zero_locks_so_the_ranks_of_one_job_share_the_directory(tmp_path,
                                                                          monkeypatch):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=environment())
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("RANK", "1")
        with RunLock(tmp_path) as lock:  # rank 1 of the holder's job
            assert not lock.held
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(RunDirectoryBusy, match=f"pid {holder.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:  # and the same process may hold it twice (nested runs)
        with RunLock(tmp_path) as inner:
            assert lock.held and inner.held
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_torchrun_ranks_of_one_w2vrun_job_run_in_one_directory(tmp_path):
    recipe = write_recipe(tmp_path, max_updates=2, save_interval=1)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", *w2vrun_command(), str(recipe), "--out", str(out)],
                          capture_output=True, text=True, env=environment(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "pretrain" / "DONE").exists()
    assert (out / "checkpoints" / "pretrain" / "update_2.pt").is_file()


def test_a_save_removes_only_temporaries_of_itself_and_of_dead_processes(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        root = tmp_path / "checkpoints"
        root.mkdir()
        others = root / f".update_7.pt.{live.pid}.tmp"       # another job's save in flight
        stale = root / f".update_3.pt.{dead.pid}.tmp"        # left by a killed run
        own = root / f".last.pt.{os.getpid()}.tmp"           # an interrupted save of ours
        unnamed = root / ".model.pt.abc123.tmp"              # no pid: not provably anyone's
        for f in (others, stale, own, unnamed):
            f.write_bytes(b"partial")
        CheckpointDirectory(root, keep_last=2).save({"w": torch.ones(3)}, 1)
        assert others.exists() and unnamed.exists()
        assert not stale.exists() and not own.exists()
        assert (root / "last.pt").is_file()
    finally:
        live.kill()
        live.wait()
