"""Running a study's variants as real ``w2vrun`` runs, each in its own run directory.

``<runs>/<variant>-s<seed>/`` is an ordinary w2v run directory plus three files of the
runner's: ``variant.json`` (the overrides that make the run, written before it starts),
``ablate.log`` (the run's stdout and stderr) and, when it ends, ``DONE`` (seconds, time,
hardware) or ``FAILED`` (exit code and error). A run with ``DONE`` is skipped next time; a
failed or killed one runs again and resumes from its finished stages and last checkpoints.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs

from w2v.errors import ConfigError

from .machine import hardware
from .study import Run, Study


DONE, FAILED, VARIANT, LOG = "DONE", "FAILED", "variant.json", "ablate.log"


@attrs.frozen
class Outcome:
    """How a run ended: ``done`` (with its ``DONE`` record), ``failed`` (with its error) or
    ``missing`` (never ran)."""

    run: Run
    state: str
    error: str = ""
    record: dict = attrs.field(factory=dict)


def say(line: str) -> None:
    """A progress line on stdout (runs in parallel threads print whole lines)."""
    print(line, flush=True)


def outcome(run: Run) -> Outcome:
    """The state a run's directory is in now."""
    for marker, state in ((DONE, "done"), (FAILED, "failed")):
        path = run.run_dir / marker
        if path.is_file():
            record = json.loads(path.read_text() or "{}")
            return Outcome(run, state, record.get("error", ""), record)
    return Outcome(run, "missing")


def check_same_variant(run: Run) -> None:
    """Refuse a run directory that holds a run made with other overrides (the study file
    changed under a finished variant): its results would be reported under the wrong name."""
    path = run.run_dir / VARIANT
    if not path.is_file():
        return
    before = json.loads(path.read_text()).get("overrides")
    if before != list(run.overrides):
        changed = sorted(set(before or []) ^ set(run.overrides))
        raise ConfigError(f"{run.run_dir} holds variant `{run.name}` run with other overrides "
                          f"({', '.join(changed)}); its results are not this study's.",
                          hint="Delete that directory to run the variant again, or give the "
                               "changed variant a new name.")


def command(recipe: Path, run: Run) -> list[str]:
    """The ``w2vrun`` command line of a run (as a module of this interpreter)."""
    return [sys.executable, "-m", "w2v.cli", str(recipe), "--out", str(run.run_dir),
            *run.overrides]


def child_environment(parallel: int) -> dict[str, str]:
    """The environment of each run: with ``parallel`` runs at once, each gets its share of
    the CPU cores as ``OMP_NUM_THREADS`` (unless the user set it), which the trainer's
    ``num_threads: 0`` follows; runs that each took every core would slow one another
    down many times over."""
    env = dict(os.environ)
    if parallel > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    return env


def execute(study: Study, run: Run, env: dict[str, str] | None = None) -> Outcome:
    """Run one variant to its end (in ``env``, default this process's environment);
    ``DONE`` or ``FAILED`` records how it went."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / FAILED).unlink(missing_ok=True)
    (run.run_dir / VARIANT).write_text(json.dumps(
        {"study": study.name, "variant": run.variant, "seed": run.seed,
         "overrides": list(run.overrides)}, indent=2) + "\n")
    argv = command(study.recipe, run)
    say(f"ablate: {run.name} starts ({run.run_dir})")
    started = time.time()
    with open(run.run_dir / LOG, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    seconds = round(time.time() - started, 1)
    if code == 0:
        record = {"seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "hardware": hardware()}
        (run.run_dir / DONE).write_text(json.dumps(record) + "\n")
        say(f"ablate: {run.name} done in {seconds:.0f} s")
        return Outcome(run, "done", record=record)
    error = last_error(run.run_dir / LOG)
    record = {"exit_code": code, "error": error, "seconds": seconds}
    (run.run_dir / FAILED).write_text(json.dumps(record) + "\n")
    say(f"ablate: {run.name} FAILED (exit {code}): {error}")
    return Outcome(run, "failed", error, record)


def dry_run(study: Study, run: Run) -> str | None:
    """``w2vrun --dry-run`` of a run (validates and builds it, trains nothing): None when it
    passes, else its error."""
    argv = [*command(study.recipe, run), "--dry-run"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("w2vrun:")]
    return (errors or lines or ["no output"])[-1].removeprefix("w2vrun:").strip() \
        .removeprefix("error:").strip()


def last_error(log_path: Path) -> str:
    """The run's error in one line: its ``w2vrun: error:`` paragraph, else the last line of
    the traceback, else the last line it printed."""
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()
             if line.strip()]
    for line in reversed(lines):
        if line.startswith("w2vrun:"):
            return line.removeprefix("w2vrun:").strip().removeprefix("error:").strip()
    return lines[-1] if lines else "no output"


def share_stages(study: Study, first: Run, run: Run) -> None:
    """Give ``run`` the finished shared stages of its variant's first seed (stage directory
    and metrics.jsonl rows), so it trains only what its seed changes."""
    for stage in study.config.shared_stages:
        source, target = first.run_dir / stage, run.run_dir / stage
        if not (source / "DONE").is_file() or target.exists():
            continue
        run.run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target)
        metrics = first.run_dir / "metrics.jsonl"
        if metrics.is_file():
            rows = [line for line in metrics.read_text().splitlines()
                    if line.strip() and json.loads(line).get("stage") == stage]
            with open(run.run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write("".join(row + "\n" for row in rows))


def run_all(study: Study, runs: list[Run], parallel: int = 1) -> list[Outcome]:
    """Run every run without ``DONE``, ``parallel`` at a time, and return every outcome in
    study order. With ``shared_stages``, each variant's first seed runs first."""
    for run in runs:
        check_same_variant(run)
    first = {}
    for run in runs:
        first.setdefault(run.variant, run)
    todo = [r for r in runs if outcome(r).state != "done"]
    if len(todo) < len(runs):
        say(f"ablate: {len(runs) - len(todo)} of {len(runs)} runs were already done (DONE "
            "markers) and are skipped")
    env = child_environment(parallel)
    waves = [todo]
    if study.config.shared_stages:
        waves = [[r for r in todo if first[r.variant] is r],
                 [r for r in todo if first[r.variant] is not r]]
    for wave in waves:
        for run in wave:
            if run is not first[run.variant]:
                share_stages(study, first[run.variant], run)
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            list(pool.map(lambda r: execute(study, r, env), wave))
    return [outcome(r) for r in runs]


def merge(runs: list[Run], other: Path) -> list[str]:
    """Copy the finished runs of ``other`` (a copy of another machine's ``runs/ablations/
    <study>``) that this study lacks; returns the names merged. A run made there with other
    overrides than this study's is refused."""
    if not Path(other).is_dir():
        raise ConfigError(f"`--merge {other}`: no such directory.",
                          hint="Give a copy of the other machine's runs/ablations/<study>.")
    merged = []
    for run in runs:
        theirs = Run(variant=run.variant, seed=run.seed, overrides=run.overrides,
                     run_dir=Path(other) / run.name)
        if outcome(theirs).state != "done" or outcome(run).state == "done":
            continue
        check_same_variant(theirs)
        if run.run_dir.exists():  # an unfinished local attempt: kept aside, never deleted
            run.run_dir.rename(run.run_dir.with_name(f"{run.name}.replaced-{int(time.time())}"))
        shutil.copytree(theirs.run_dir, run.run_dir)
        merged.append(run.name)
    return merged
