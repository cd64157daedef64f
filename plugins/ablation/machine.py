"""What a result page says about where it came from: the w2v commit and the hardware."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Iterable


def git_commit(directory: Path | str, generated: Iterable[Path] = ()) -> str:
    """The commit of the checkout holding ``directory`` (12 hex digits), ``-dirty`` when a
    tracked file differs from it other than the ``generated`` files (study pages and plots,
    which ``w2vrun ablate`` itself rewrites); ``unknown`` outside a git checkout."""
    def git(*argv: str) -> str | None:
        try:
            out = subprocess.run(["git", *argv], cwd=str(directory), capture_output=True,
                                 text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = (git("rev-parse", "--short=12", "HEAD") or "").strip()
    top = (git("rev-parse", "--show-toplevel") or "").strip()
    status = git("status", "--porcelain", "--untracked-files=no")
    if not commit or not top or status is None:
        return "unknown"
    skip = {Path(p).resolve() for p in generated}
    changed = [Path(top, line[3:].split(" -> ")[-1]).resolve()
               for line in status.splitlines() if line.strip()]
    return commit + ("-dirty" if any(p not in skip for p in changed) else "")


def study_outputs(study_path: Path) -> list[Path]:
    """The pages and plots ``w2vrun ablate`` writes beside the studies in ``study_path``'s
    folder (``X.md`` and ``X.png`` for every ``X.yaml``)."""
    return [yaml.with_suffix(suffix) for yaml in Path(study_path).parent.glob("*.yaml")
            for suffix in (".md", ".png")]


def hardware() -> str:
    """``CPU model (N cores)``, plus the first CUDA device when one is visible."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu} ({cores} cores available)"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", {torch.cuda.get_device_name(0)}"
    except Exception:  # torch without a working CUDA runtime: CPU only
        pass
    return text
