"""Trainer checkpoints: atomic files, rotation, loading with clear errors, partial loads.

Layout of ``<checkpoint_dir>/``: ``update_<N>.pt`` (the last ``keep_last``),
``last.pt`` and ``best.pt`` (hard links to, or copies of, a periodic file, or
written on their own). Every write goes to a temporary file in the same
directory, is flushed to disk and then renamed over the target, so a kill at
any moment leaves either the old file or the new one, never half of one.

A checkpoint is a plain dict (tensors, numbers, strings) readable with
``torch.load(weights_only=True)``::

    {"format": "w2v-trainer-checkpoint", "format_version": 1, "stage": ..., "model": ...,
     "objective": ..., "optimizers": {group: state}, "scaler": ..., "trainer": {...},
     "data": {"epoch", "consumed", "sampler"}, "rng": {...}, "config": {...},
     "recipe": {...} | None, "plugins": {name: version}, "torch": "2.9.1"}
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import attrs
import numpy as np
import torch
from torch import nn

from ..errors import UserError, storage_error
from ..integrity import corrupted_member

FORMAT = "w2v-trainer-checkpoint"
FORMAT_VERSION = 1
_PERIODIC = re.compile(r"^update_(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$")


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, foreign, or does not fit the model."""


def to_plain(value: Any) -> Any:
    """NumPy scalars and arrays inside (sampler) state -> Python numbers, lists and tensors."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_for(path: Path) -> Path:
    """The temporary beside ``path`` this process writes first: ``.<name>.<pid>.tmp`` (the pid
    says whose it is, so only its owner, or anyone once the owner is dead, removes it)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def _writing(tmp: Path, target: Path):
    """Remove ``tmp`` when writing it fails or is interrupted (Ctrl-C included); an OSError
    (disk full, read-only) becomes a StorageError naming ``target``."""
    try:
        yield
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if _interrupted(exc):  # torch.save answers Ctrl-C with an error of its own
            raise KeyboardInterrupt from None
        if isinstance(exc, OSError):
            raise storage_error(target, exc) from None
        raise


def _interrupted(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__context__
    return False


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``."""
    path = Path(path)
    tmp = temporary_for(path)
    with _writing(tmp, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def atomic_link(src: Path, dst: Path) -> Path:
    """Make ``dst`` the same file as ``src`` (a hard link, else a copy), atomically."""
    tmp = temporary_for(dst)
    with _writing(tmp, dst):
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    _fsync_dir(dst.parent)
    return dst


def _owner_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers (an earlier save in this process) are removable
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete ``.*.<pid>.tmp`` files in ``directory`` whose writer is this process or dead.

    A temporary of a live process (another job writing there) is left alone, and so is any
    temporary without a pid in its name.
    """
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        m = _TEMPORARY.match(tmp.name)
        if m is None or _owner_alive(int(m.group(1))):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A file, or a run / checkpoint directory (``checkpoints/last.pt`` inside it)."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in (p / "last.pt", p / "checkpoints" / "last.pt"):
            if candidate.is_file():
                return candidate
        found = sorted(f for f in p.glob("checkpoints/*/last.pt")
                       if ".old-" not in f.parent.name)  # not stages' moved-aside checkpoints
        if len(found) == 1:
            return found[0]
        raise CheckpointError(f"no checkpoint found in directory {p} (looked for last.pt and "
                              f"checkpoints/last.pt).",
                              hint="Pass the checkpoint file itself.")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist.")
    return p


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a trainer checkpoint onto the CPU; truncated or foreign files raise CheckpointError."""
    p = resolve_checkpoint_path(path)
    check_integrity(p)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle errors say little to a user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        foreign = any(t in str(exc) for t in ("Weights only load failed", "Unsupported global"))
        if foreign:
            raise CheckpointError(
                f"{p} is not a w2v trainer checkpoint (it holds Python objects a trainer "
                f"checkpoint never contains; a fairseq or other foreign file?).",
                hint="Load foreign models with `w2v.load_pretrained` or a stage's `init:`; "
                     "`trainer.restore` takes only w2v trainer checkpoints.") from None
        raise CheckpointError(
            f"cannot read checkpoint {p}: the file is truncated or not a torch checkpoint "
            f"({type(exc).__name__}: {reason}).",
            hint="Delete it to fall back to an older checkpoint (update_<N>.pt), or point "
                 "`trainer.restore.path` at another file.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        kind = "a fairseq checkpoint" if isinstance(state, dict) and \
            ("cfg" in state or "args" in state) else "not a w2v trainer checkpoint"
        raise CheckpointError(
            f"{p} is {kind}.",
            hint="Load foreign models with `w2v.load_pretrained` or a stage's `init:`; "
                 "`trainer.restore` takes only w2v trainer checkpoints.")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{p} was written by a newer w2v (checkpoint format "
                              f"{state.get('format_version')}, this w2v reads up to "
                              f"{FORMAT_VERSION}).", hint="Upgrade w2v.")
    state["path"] = str(p)
    return state


def check_integrity(path: Path) -> None:
    """Raise a CheckpointError when a member of the checkpoint archive ``path`` fails its CRC
    (the bytes changed after the file was written: bit rot, a bad copy, an edit)."""
    bad = corrupted_member(path)
    if bad is not None:
        raise CheckpointError(
            f"{path} is corrupted: {bad} does not match the checksum recorded when the file "
            f"was written (the bytes changed on disk or in a copy), so it is not loaded.",
            hint="Restore it from a backup or copy it again; in a run directory, an older "
                 "`update_<N>.pt` beside it may still be intact.")


@attrs.frozen(kw_only=True)
class LoadReport:
    """What a (partial) state-dict load did, by parameter name.

    Attributes:
        loaded: names copied from the checkpoint.
        new: names of the module the checkpoint lacks (left as initialised).
        dropped: names in the checkpoint the module lacks (ignored).
        mismatched: names in both with different shapes (left as initialised).
    """

    loaded: tuple[str, ...] = ()
    new: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not (self.new or self.dropped or self.mismatched)

    def merge(self, other: "LoadReport") -> "LoadReport":
        return LoadReport(loaded=self.loaded + other.loaded, new=self.new + other.new,
                          dropped=self.dropped + other.dropped,
                          mismatched=self.mismatched + other.mismatched)

    def describe(self, limit: int = 8) -> str:
        def names(items: tuple[str, ...]) -> str:
            shown = ", ".join(items[:limit])
            return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")

        lines = [f"loaded {len(self.loaded)} tensors"]
        for label, items in (("new (initialised, not in the checkpoint)", self.new),
                             ("dropped (in the checkpoint, not in the model)", self.dropped),
                             ("shape mismatch (left initialised)", self.mismatched)):
            if items:
                lines.append(f"{label}: {len(items)}: {names(items)}")
        return "; ".join(lines)


def load_partial(module: nn.Module, state: Mapping[str, torch.Tensor], prefix: str = ""
                 ) -> LoadReport:
    """Load what fits of ``state`` into ``module``; report the rest (names get ``prefix``)."""
    own = module.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    module.load_state_dict(fitting, strict=False)
    return LoadReport(loaded=tuple(prefix + k for k in sorted(fitting)),
                      new=tuple(prefix + k for k in sorted(set(own) - set(state))),
                      dropped=tuple(prefix + k for k in sorted(set(state) - set(own))),
                      mismatched=tuple(prefix + k for k in mismatched))


class CheckpointDirectory:
    """Writes and rotates a stage's checkpoints.

    Args:
        root: the directory (``<run_dir>/checkpoints``).
        keep_last: periodic ``update_<N>.pt`` files kept.
    """

    def __init__(self, root: Path, keep_last: int) -> None:
        self.root = Path(root)
        self.keep_last = keep_last

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    def periodic(self, update: int) -> Path:
        return self.root / f"update_{update}.pt"

    def save(self, state: dict[str, Any], update: int) -> Path:
        """Write ``update_<N>.pt``, point ``last.pt`` at it, and prune old periodic files."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(self.root, exc, "create") from None
        self._clean_temporaries()
        path = atomic_save(state, self.periodic(update))
        atomic_link(path, self.last)
        self._prune()
        return path

    def mark_best(self, state: dict[str, Any] | None, update: int) -> Path:
        """Make ``best.pt`` the checkpoint of ``update`` (linked if written, else saved)."""
        periodic = self.periodic(update)
        if periodic.is_file():
            return atomic_link(periodic, self.best)
        if state is None:
            raise ValueError("no checkpoint of this update exists; pass its state")
        return atomic_save(state, self.best)

    def _clean_temporaries(self) -> None:
        remove_stale_temporaries(self.root)

    def _prune(self) -> None:
        found = sorted((int(m.group(1)), p) for p in self.root.iterdir()
                       if (m := _PERIODIC.match(p.name)))
        for _, p in found[:-self.keep_last]:
            p.unlink(missing_ok=True)
