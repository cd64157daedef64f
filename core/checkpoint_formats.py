"""w2v model files and :func:`load_pretrained` dispatch.

A w2v model file (``model.pt``) holds the model's resolved config, its state
dict, the sample rate, the dictionary (for CTC models) and the plugin
distributions and versions that built it, so it can be rebuilt anywhere the
same plugins are installed. Foreign formats (fairseq ``.pt``, Hugging Face
directories, torchaudio state dicts) are registered by plugins through
``registrar.add_importer`` and auto-detected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import UserError, storage_error
from .integrity import corrupted_member

FORMAT = "w2v-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"


def dictionary_state(d) -> dict[str, Any] | None:
    """A label dictionary as plain data (symbols and special ids)."""
    if d is None:
        return None
    return {"symbols": list(d.symbols), "blank": d.blank, "pad": d.pad, "unk": d.unk,
            "eos": d.eos, "bos": d.bos, "nspecial": d.nspecial, "word_boundary": d.word_boundary}


def dictionary_from_state(state: dict[str, Any] | None):
    from .data.dictionary import Dictionary

    return None if state is None else Dictionary(**state)


def save_model(model, model_config, path: str | Path, *, dictionary=None,
               extra: dict[str, Any] | None = None) -> Path:
    """Write a w2v model file atomically (temp file + rename)."""
    from .config.structure import unstructure
    from .plugin_manager import plugins

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model_config": unstructure(model_config),
        "sample_rate": getattr(model, "sample_rate", 16000),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "dictionary": dictionary_state(dictionary),
        "plugins": plugins().versions(),
        "extra": extra or {},
    }
    from .train.checkpoint import remove_stale_temporaries

    remove_stale_temporaries(path.parent)  # left by a killed writer; a live one's stay
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # the pid names its owner
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise storage_error(path, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_blob(path: Path) -> dict[str, Any]:
    bad = corrupted_member(path)
    if bad is not None:
        raise UserError(f"`{path}` is corrupted: {bad} does not match the checksum recorded "
                        f"when the file was written (the bytes changed on disk or in a copy), "
                        f"so it is not loaded.",
                        hint="Restore it from a backup or copy it again, or write it again "
                             "from the stage's checkpoint (`w2vrun RECIPE --stages STAGE`).")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read `{path}` as a w2v model file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}).",
                        hint="The file may be truncated or not a w2v checkpoint.") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"`{path}` is not a w2v model file.")
    return blob


def load_w2v(path: str | Path, *, dictionary=None):
    """Rebuild a model from a w2v model file, in eval mode."""
    from .build import ModelConfig, build_model
    from .config.structure import structure

    from .data.dictionary import Dictionary

    blob = read_blob(Path(path))
    cfg = structure(blob["model_config"], ModelConfig, path=("model",))
    if dictionary is not None and not isinstance(dictionary, Dictionary):
        dictionary = Dictionary.load(dictionary)
    if dictionary is None:
        dictionary = dictionary_from_state(blob.get("dictionary"))
    model = build_model(cfg, blob.get("sample_rate", 16000), dictionary=dictionary)
    check_state_fits(path, model, blob)
    model.load_state_dict(blob["state_dict"])
    model.dictionary = dictionary
    model.model_config = cfg
    return model.eval()


def check_state_fits(path: Path, model, blob: dict[str, Any]) -> None:
    """Raise a UserError naming every tensor of ``blob`` that the model its config builds
    lacks, does not have, or has in another shape (the file's config and tensors disagree)."""
    own = model.state_dict()
    state = blob["state_dict"]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} (file {tuple(state[k].shape)}, config {tuple(own[k].shape)})"
              for k in sorted(set(own) & set(state))
              if tuple(state[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return

    def names(label: str, items: list[str]) -> str:
        more = f", ... ({len(items) - 6} more)" if len(items) > 6 else ""
        return f"{label}: {', '.join(items[:6])}{more}"

    parts = [names(label, items) for label, items in (
        ("shape differs", shapes), ("missing from the file", missing),
        ("not in the model", unexpected)) if items]
    raise UserError(f"`{path}`: its model config and its tensors disagree; "
                    f"{'; '.join(parts)}.",
                    hint="The file was edited, or written by other plugin versions (it lists "
                         "them under `plugins`); write it again from its run.")


def find_model_file(path: Path) -> Path | None:
    """A model file inside a run or stage directory (the last stage that wrote one)."""
    if path.is_file():
        return path
    direct = path / MODEL_FILE
    if direct.exists():
        return direct
    candidates = sorted(path.glob(f"*/{MODEL_FILE}"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def is_w2v(path: Path) -> bool:
    found = find_model_file(path) if path.exists() else None
    if found is None or not found.is_file():
        return False
    try:
        with open(found, "rb") as fh:
            head = fh.read(4)
        return head[:2] == b"PK" and FORMAT.encode() in _peek(found)
    except OSError:
        return False


def _peek(path: Path) -> bytes:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            return zf.read(names[0]) if names else b""
    except zipfile.BadZipFile as exc:
        # a CRC mismatch: a damaged file; let read_blob name it rather than call it foreign
        return FORMAT.encode() if "CRC" in str(exc) else b""
    except (OSError, KeyError):
        return b""


def load_pretrained(path: str | Path, dictionary=None, **kwargs):
    """Load any supported checkpoint (auto-detected) and return the model in eval mode."""
    from .plugin_manager import registry

    path = Path(path)
    if not path.exists():
        raise UserError(f"`{path}` does not exist.")
    if is_w2v(path):
        return load_w2v(find_model_file(path), dictionary=dictionary)
    importers = registry().importers
    for imp in importers.values():
        try:
            ok = imp.detect(path)
        except Exception:
            ok = False
        if ok:
            model = imp.load(path, dictionary=dictionary, **kwargs)
            return model.eval() if hasattr(model, "eval") else model
    known = ", ".join(["w2v"] + sorted(importers)) or "w2v"
    raise UserError(f"`{path}` is not a checkpoint format w2v recognises.",
                    hint=f"Known formats: {known}. A run directory must contain a stage that "
                         f"wrote {MODEL_FILE}.")
