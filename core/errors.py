"""User-facing errors.

A :class:`UserError` is a mistake in something the user wrote (a recipe, an
override, a data file, a command-line argument). ``w2vrun`` prints it as one
paragraph, without a traceback, and exits with code 2. Anything else is a bug
and exits with code 1.
"""

from __future__ import annotations

import difflib
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


class MissingDependencyError(UserError):
    """An optional dependency of a component is not installed."""

    def __init__(self, package: str, extra: str, *, component: str | None = None):
        what = f"{component} needs" if component else "this needs"
        super().__init__(
            f"{what} the Python package `{package}`, which is not installed.",
            hint=f"Install it with `pip install 'w2v[{extra}]'` (or `pip install {package}`).",
        )


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
