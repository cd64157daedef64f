"""What a result page says about where it came from: the w2v commit and the hardware."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def git_commit(directory: Path | str) -> str:
    """``git describe --always --dirty`` of the checkout holding ``directory`` (the commit,
    ``-dirty`` when files differ from it), or ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=str(directory), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


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
