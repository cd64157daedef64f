"""User-facing errors.

A :class:`UserError` is a mistake in something the user wrote (a recipe, an
override, a data file, a command-line argument). ``w2vrun`` prints it as one
paragraph, without a traceback, and exits with code 2. Anything else is a bug
and exits with code 1.
"""

from __future__ import annotations

import difflib
import errno
import re
from typing import Iterable, Sequence


#: Key paths starting with these are absolute (recipe sections); others are relative.
_ROOTS = ("data", "model", "objective", "decoder", "trainer", "stages", "base")


class UserError(Exception):
    """A mistake the user can fix; printed without a traceback, exit code 2.

    Args:
        message: what is wrong, in one or two sentences.
        where: ``file:line`` (or "command line") the mistake comes from.
        key: the dotted key path (``model.quantizer.num_vars``).
        hint: how to fix it ("did you mean ...", the valid choices).
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, key: str | None = None,
                 hint: str | None = None):
        self.message = message
        self.where = where
        self.key = key
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        head = []
        if self.where:
            head.append(self.where)
        if self.key:
            head.append(f"`{self.key}`")
        text = (": ".join(head) + ": " if head else "") + self.message
        if self.hint:
            text += " " + self.hint
        return text

    def located(self, *, where: str | None = None, key: str | None = None) -> "UserError":
        """A copy with location filled in: a key relative to the component (``dim``) is
        joined to the component's key path (``model.quantizer.dim``)."""
        own = self.key
        if own and key and own.split(".")[0] not in _ROOTS and not own.startswith(key + "."):
            own = f"{key}.{own}"
        out = type(self).__new__(type(self))
        UserError.__init__(out, self.message, where=self.where or where, key=own or key,
                           hint=self.hint)
        return out


class ConfigError(UserError):
    """A recipe, override or component configuration is invalid."""


class DataError(UserError):
    """Input data (manifest, audio, labels) is missing or malformed."""


class FitError(ConfigError):
    """Two components do not fit together (width, stride, causality)."""


class StorageError(UserError):
    """A file or folder cannot be written (not writable, read-only, disk full)."""


class ResourceError(UserError):
    """The machine ran out of a resource the configuration asked for (memory)."""


#: errno names users know, for messages.
_ERRNO_TEXT = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EROFS: "read-only file system"}


def storage_error(path, exc: OSError, what: str = "write") -> StorageError:
    """A :class:`StorageError` for an OSError met while writing ``path``."""
    reason = _ERRNO_TEXT.get(exc.errno or 0) or exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "Free space there, or give the run another `--out` on a disk with room."
    else:
        hint = "Make it writable, or give the run another `--out`."
    return StorageError(f"cannot {what} {path}: {reason}.", hint=hint)


def check_writable(directory) -> None:
    """Create ``directory`` if needed and prove it writable by creating and removing a file;
    raise :class:`StorageError` (before any compute is spent) when it is not."""
    import os
    from pathlib import Path

    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".w2v-write-test.{os.getpid()}.tmp"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise storage_error(d, exc, "write to") from None


_ASKED = re.compile(r"(?:tried to allocate|Tried to allocate|Unable to allocate)\s+"
                    r"([0-9.]+\s*[KMGTPE]?i?B|[0-9]+ bytes)")


def _readable_bytes(text: str) -> str:
    m = re.fullmatch(r"([0-9]+) bytes", text)
    if not m:
        return text
    n = float(m.group(1))
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024
    return text


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CPU/GPU allocation failures (torch.OutOfMemoryError, an allocator's
    RuntimeError, MemoryError); the kernel's OOM killer cannot be caught at all."""
    if isinstance(exc, MemoryError):
        return True
    oom_cls = getattr(__import__("sys").modules.get("torch"), "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower() or
                                              "can't allocate memory" in text)


def out_of_memory_error(exc: BaseException, where: str, hint: str) -> ResourceError:
    """A :class:`ResourceError` saying how much was asked for, where, and which knob lowers it."""
    m = _ASKED.search(str(exc))
    asked = f"an allocation of {_readable_bytes(m.group(1).strip())}" if m else "an allocation"
    device = "GPU" if "CUDA" in str(exc) or "MPS" in str(exc) else "CPU"
    place = f" {where}" if where else ""
    return ResourceError(f"out of {device} memory{place}: {asked} failed.", hint=hint)


class MissingDependencyError(ConfigError):
    """Optional dependencies of a component are not installed.

    Args:
        packages: the distributions pip installs (``flashlight-text``), not import names.
        extra: the extra of ``dist`` that installs them (``decode``), if any.
        dist: the distribution of the plugin that needs them.
    """

    def __init__(self, packages: str | Sequence[str], extra: str | None = None, *,
                 component: str | None = None, dist: str = "w2v", where: str | None = None,
                 key: str | None = None):
        packages = [packages] if isinstance(packages, str) else list(packages)
        one = len(packages) == 1
        names = " and ".join(f"`{p}`" for p in packages)
        what = f"{component} needs" if component else "this needs"
        hint = f"Install {'it' if one else 'them'} with `pip install {' '.join(packages)}`"
        if extra and dist == "w2v":
            hint += f", or from the w2v checkout with `pip install -e '.[{extra}]'`"
        elif extra:
            hint += f", or with `pip install '{dist}[{extra}]'`"
        super().__init__(f"{what} the Python package{'' if one else 's'} {names}, which "
                         f"{'is' if one else 'are'} not installed.", where=where, key=key,
                         hint=hint + ".")


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to ``word`` by edit similarity, or None."""
    choices = list(choices)
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if found:
        return found[0]
    lowered = {c.lower(): c for c in choices}
    return lowered.get(word.lower())


def did_you_mean(word: str, choices: Sequence[str], noun: str = "choices") -> str:
    """A hint: ``did you mean `x`? Valid choices: a, b, c.``"""
    best = nearest(word, choices)
    listing = ", ".join(f"`{c}`" for c in sorted(choices)) or "(none)"
    if best is not None:
        return f"Did you mean `{best}`? Valid {noun}: {listing}."
    return f"Valid {noun}: {listing}."


def import_optional(module: str, extra: str, *, component: str | None = None):
    """Import an optional dependency, or raise a clear install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(module.split(".")[0].replace("_", "-"), extra,
                                     component=component) from None
