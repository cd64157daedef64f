"""Run many ``w2vrun`` jobs in parallel and read back what they measured.

Shared by the experiment scripts beside it (``demo_scale.py``, ``demo_claim.py``):
each job is one ``w2vrun RECIPE --out DIR --stages ...`` process with its own
log; a job starts once the jobs it waits for have succeeded, and is skipped
(not run) when one of them failed.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


def pin_threads(argv: list[str], default: int = 2) -> int:
    """Read ``--threads N`` from ``argv`` and export it as OMP/MKL_NUM_THREADS; call before
    torch is imported, so the thread pools start at that size."""
    threads = default
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    return threads


@dataclass
class Job:
    name: str
    recipe: str
    out: Path
    stages: list[str]
    overrides: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    rc: int | None = None
    seconds: float = 0.0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "w2v.cli", self.recipe, "--out", str(self.out),
                "--stages", ",".join(self.stages), "--force", *self.overrides]


def median_seconds(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median wall time of each function over ``repeats`` interleaved rounds (one warm-up),
    for the kernel micro-benchmarks (``bench_conv_encoder.py``, ``bench_dropout.py``,
    ``bench_positional_conv.py``)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run_jobs(jobs: list[Job], parallel: int, logs: Path, threads: int = 1,
             deadline: float | None = None, say=print) -> dict[str, Job]:
    """Run ``jobs`` (at most ``parallel`` at once) in dependency order; returns them by name.

    At ``deadline`` (a ``time.time()`` value) running jobs are stopped and the rest skipped.
    """
    logs.mkdir(parents=True, exist_ok=True)
    by_name = {j.name: j for j in jobs}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               PYTHONUNBUFFERED="1")
    waiting, running = list(jobs), {}
    # A killed scheduler must not leave its jobs running (they would keep writing the runs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        _schedule(by_name, waiting, running, parallel, logs, env, deadline, say)
    finally:
        for proc, log, _ in running.values():
            proc.kill()
            proc.wait()
            log.close()
    return by_name


def _schedule(by_name: dict[str, Job], waiting: list[Job], running: dict, parallel: int,
              logs: Path, env: dict, deadline: float | None, say) -> None:
    while waiting or running:
        if deadline is not None and time.time() > deadline:
            for name, (proc, log, started) in running.items():
                proc.kill()
                proc.wait()
                log.close()
                by_name[name].rc, by_name[name].seconds = -9, time.time() - started
                say(f"[runs] {name}: stopped at the deadline")
            for job in waiting:
                job.rc = -1
            running.clear()
            return
        for job in list(waiting):
            deps = [by_name[d] for d in job.after]
            if any(d.rc not in (None, 0) for d in deps):
                job.rc = -1
                waiting.remove(job)
                say(f"[runs] {job.name}: skipped (a job it waits for failed)")
            elif all(d.rc == 0 for d in deps) and len(running) < parallel:
                waiting.remove(job)
                job.out.parent.mkdir(parents=True, exist_ok=True)
                log = open(logs / f"{job.name}.log", "w")
                running[job.name] = (subprocess.Popen(job.command(), stdout=log,
                                                      stderr=subprocess.STDOUT, env=env),
                                     log, time.time())
        for name, (proc, log, started) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                job = by_name[name]
                job.rc, job.seconds = proc.returncode, time.time() - started
                del running[name]
                say(f"[runs] {name}: rc {job.rc} in {job.seconds:.0f} s")
        time.sleep(0.5)


def metrics(run_dir: Path, stage: str, split: str = "train") -> list[dict]:
    """The ``metrics.jsonl`` records of one stage and split, in order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("stage") == stage and r.get("split") == split]


def last(run_dir: Path, stage: str, key: str, split: str = "train") -> float | None:
    rows = [r for r in metrics(run_dir, stage, split) if key in r]
    return float(rows[-1][key]) if rows else None


def best(run_dir: Path, stage: str, key: str, split: str = "valid") -> float | None:
    values = [float(r[key]) for r in metrics(run_dir, stage, split) if key in r]
    return min(values) if values else None


def evaluation(run_dir: Path, stage: str) -> dict[tuple[str, str], dict]:
    """``{(model, decoder): row}`` from an evaluate stage's ``results.json``."""
    path = Path(run_dir) / stage / "results.json"
    if not path.exists():
        return {}
    return {(r["model"], r["decoder"]): r for r in json.loads(path.read_text())["results"]}


def summary(run_dir: Path, stage: str) -> dict:
    path = Path(run_dir) / stage / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def machine() -> str:
    """One line naming the hardware the numbers came from."""
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, " \
           f"torch {torch.__version__}"
