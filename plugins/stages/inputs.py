"""Where a stage's inputs come from: an earlier stage's directory or a path, the manifests of
the splits it works on, and the device it runs on (shared by the featurize and unit stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from w2v.data.sources import SPLITS
from w2v.errors import ConfigError, DataError, did_you_mean

Device = Literal["auto", "cpu", "cuda"]


def run_device(name: str) -> str:
    """``auto`` (CUDA when torch sees a GPU), ``cpu`` or ``cuda`` (a ConfigError without one)."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("`device: cuda` was asked for, but torch sees no CUDA GPU.",
                          key="device", hint="Use `device: auto` or `cpu`.")
    return name


def source_dir(ref: str, context, key: str) -> Path:
    """An earlier stage's directory (it must have completed) or an existing path."""
    if ref in context.plans:
        return context.output_of(ref)
    path = Path(ref).expanduser()
    if not path.exists():
        raise ConfigError(f"`{ref}` is neither a stage of this recipe nor an existing path.",
                          key=f"stages.{context.stage_id}.{key}",
                          hint=did_you_mean(ref, list(context.plans), "stage ids"))
    return path


def stage_manifests(splits, extra, data, sid: str, context=None) -> dict[str, str]:
    """``{name: manifest path}``: the chosen splits of ``data:`` (null: every split set there)
    and the extra ``name: path`` manifests (``CORPUS:SPLIT`` references resolved). With a
    stage ``context``, a split set to an earlier stage's id (``data.train: silence``) is
    that stage's ``<split>.tsv``."""
    from w2v.data.loader import resolve_corpus, resolve_manifest

    names = splits if splits is not None else [s for s in SPLITS if data.manifest(s) is not None]
    out = {}
    for split in names:
        if split not in SPLITS:
            raise ConfigError(f"unknown data split `{split}`.", key=f"stages.{sid}.splits",
                              hint=did_you_mean(split, list(SPLITS)) +
                              " Other manifests go under `manifests:`.")
        ref = data.manifest(split)
        if context is not None and ref in context.plans:
            made = context.output_of(ref) / f"{split}.tsv"
            if not made.is_file():
                raise DataError(f"stage `{ref}` made no `{split}` split ({made} does not "
                                "exist).", key=f"stages.{sid}.data.{split}",
                                hint=f"Set `data.{split}` for stage `{ref}`, or leave the split "
                                     f"out here (`stages.{sid}.data.{split}=null`).")
            out[split] = str(made)
            continue
        out[split] = resolve_manifest(data, split)
    for name, path in extra.items():
        if name in out:
            raise ConfigError(f"`{name}` is both a split and a manifest name.",
                              key=f"stages.{sid}.manifests.{name}")
        out[name] = resolve_corpus(path, f"stages.{sid}.manifests.{name}")
    if not out:
        raise ConfigError("nothing to do: no split is set in `data:` and `manifests` is "
                          "empty.", key=f"stages.{sid}.splits")
    return out
