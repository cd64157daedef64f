"""A real, seconds-long ``w2vrun`` recipe for the run-safety tests: eight 0.25-0.45 s wav files
written with soundfile, their fairseq manifest, and a wav2vec 1.0 model about 5k parameters
wide (future-step contrastive loss) that trains on them on one CPU thread.

- :func:`write_corpus` / :func:`write_recipe`: the files.
- :func:`w2vrun`: the installed ``w2vrun`` script in a subprocess (``prefix`` runs it under
  another program, e.g. ``setpriv``), returning ``(code, stdout, stderr)``.
- :func:`unprivileged`: a prefix under which file permissions apply even to root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

RECIPE = """\
data:
  train: {manifest}
  max_tokens: 32000
  max_sample_size: 8000
  num_workers: 0
model:
  encoder:
    name: wav2vec_conv
    layers: [[16, 10, 5], [16, 8, 4], [16, 4, 2]]
  aggregator:
    name: wav2vec_conv_aggregator
    layers: [[16, 3, 1], [16, 3, 1]]
objective:
  name: future_contrastive
  prediction_steps: 2
  num_negatives: 2
trainer:
  max_updates: {max_updates}
  lr: 1.0e-3
  log_interval: 1
  save_interval: {save_interval}
  device: cpu
  num_threads: 1
stages:
  pretrain: {{name: pretrain}}
"""


def write_corpus(root: Path, n: int = 8) -> Path:
    """``n`` noisy tones under ``root/audio`` and ``root/train.tsv`` listing them."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        size = 4000 + 400 * i
        t = np.arange(size) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.05 * rng.standard_normal(size)
        sf.write(audio / f"u{i}.wav", wave.astype(np.float32), 16000)
        rows.append(f"u{i}.wav\t{size}")
    manifest = root / "train.tsv"
    manifest.write_text(f"{audio}\n" + "\n".join(rows) + "\n")
    return manifest


def write_recipe(root: Path, manifest: Path | None = None, *, max_updates: int = 4,
                 save_interval: int = 2) -> Path:
    """The tiny recipe over ``manifest`` (a fresh corpus under ``root`` when None)."""
    manifest = manifest or write_corpus(root)
    path = root / "tiny.yaml"
    path.write_text(RECIPE.format(manifest=manifest, max_updates=max_updates,
                                  save_interval=save_interval))
    return path


def w2vrun_command() -> list[str]:
    script = Path(sys.executable).parent / "w2vrun"
    if not script.exists():
        pytest.skip(f"the w2vrun console script is not installed beside {sys.executable}")
    return [str(script)]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("W2V_DISABLE_PLUGINS", "RANK",
                                                           "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def w2vrun(*args, prefix: list[str] = (), timeout: float = 180) -> tuple[int, str, str]:
    proc = subprocess.run([*prefix, *w2vrun_command(), *map(str, args)], capture_output=True,
                          text=True, env=environment(), timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def unprivileged() -> list[str]:
    """A command prefix under which permission bits apply (root loses the capabilities that
    bypass them); skips the test when that is not possible."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits do not apply")
    caps = "-dac_override,-dac_read_search"
    probe = subprocess.run([setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode()[:200]}")
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def assert_clean_exit(code: int, err: str, expected: int = 2) -> None:
    """Exit ``expected`` with a ``w2vrun:`` message and no Python traceback."""
    assert code == expected, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "w2vrun:" in err, err[-3000:]
