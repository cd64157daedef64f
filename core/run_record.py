"""What a run directory remembers about each stage, so that a rerun cannot mix or hide runs.

- ``<run_dir>/<stage>/resolved.yaml``: the stage's config as it trained (data, model,
  objective, decoder, trainer and the stage's own keys), written when the stage starts.
  A rerun of a finished stage with a different config is refused (:func:`config_changes`
  names the keys); keys that only change speed, logging or where things are written
  (:data:`IGNORED_KEYS`) are not compared.
- ``<run_dir>/<stage>/config_changes.jsonl``: one line per resume whose config differed
  from the one the checkpoints were trained with (time, checkpoint, ``{key: [old, new]}``).
- ``<run_dir>/checkpoints/<stage>.old-<time>/``: a stage's checkpoints moved aside when the
  stage starts again from scratch (``--force``, ``--from``, ``--no-resume``), never mixed
  with the new run's and never deleted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

STAGE_CONFIG = "resolved.yaml"
CHANGES_LOG = "config_changes.jsonl"

#: Last components of key paths whose value does not change what a stage computes: workers,
#: threads and devices, compilation and DDP bookkeeping, logging / validation / checkpoint
#: intervals, and whether to resume.
IGNORED_KEYS = frozenset({
    "num_workers", "device", "num_threads", "compile", "activation_checkpointing",
    "find_unused_parameters",
    "log_interval", "valid_interval", "save_interval", "keep_last", "resume",
})


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trainer": {"lr": 1}}`` -> ``{"trainer.lr": 1}`` (lists are compared whole)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _normalise(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as it reads back from YAML (tuples become lists, and so on)."""
    return yaml.safe_load(yaml.safe_dump(dict(config), sort_keys=False)) or {}


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs between two stage configs: ``{key: (old, new)}`` (a key only
    in one has ``None`` on the other side); :data:`IGNORED_KEYS` are left out."""
    a, b = flatten(_normalise(old)), flatten(_normalise(new))
    changes = {}
    for key in list(a) + [k for k in b if k not in a]:
        if key.rsplit(".", 1)[-1] in IGNORED_KEYS:
            continue
        if a.get(key) != b.get(key):
            changes[key] = (a.get(key), b.get(key))
    return changes


def describe_changes(changes: Mapping[str, tuple[Any, Any]], prefix: str = "",
                     limit: int = 12) -> str:
    """``trainer.lr: 0.001 -> 0.002; ...`` (at most ``limit`` keys)."""
    def show(v: Any) -> str:
        return json.dumps(v) if not isinstance(v, str) else v

    items = [f"{prefix}{k}: {show(a)} -> {show(b)}" for k, (a, b) in changes.items()]
    more = f"; ... ({len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def read_stage_config(stage_dir: Path) -> dict[str, Any] | None:
    """The config a stage last started with, or None (never started, or an older w2v)."""
    path = Path(stage_dir) / STAGE_CONFIG
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None


def write_stage_config(stage_dir: Path, config: Mapping[str, Any]) -> Path:
    path = Path(stage_dir) / STAGE_CONFIG
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False, width=100))
    return path


def record_changes(stage_dir: Path, changes: Mapping[str, tuple[Any, Any]], checkpoint: Path
                   ) -> Path:
    """Append one resume-with-changes line to ``<stage_dir>/config_changes.jsonl``."""
    path = Path(stage_dir) / CHANGES_LOG
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "resumed_from": str(checkpoint),
            "changes": {k: [a, b] for k, (a, b) in changes.items()}}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    return path


def move_aside(checkpoint_dir: Path) -> Path | None:
    """Rename a non-empty ``checkpoint_dir`` to ``<name>.old-<YYYYmmdd-HHMMSS>`` beside it (a
    counter is added when that exists); returns the new path, or None when there was nothing."""
    d = Path(checkpoint_dir)
    if not d.is_dir() or not any(d.iterdir()):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = d.with_name(f"{d.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = d.with_name(f"{d.name}.old-{stamp}-{n}")
    d.rename(target)
    return target
