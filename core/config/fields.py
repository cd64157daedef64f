"""Field helpers for attrs configs: help text, bounds, component references.

Every config field carries ``metadata["help"]``; ``w2vrun show``, the docs
tables and error messages read it. Every size is bounded, so a fuzzed
``layers: 1000000`` is a config error, not an out-of-memory.

Example::

    @attrs.define(kw_only=True)
    class GumbelConfig:
        groups: int = size(2, 1, 64, "codebook groups G")
        temp: tuple[float, float, float] = field((2.0, 0.5, 0.999995), "(max, min, decay) temperature")
        masker: ComponentSpec | None = component("masker", {"name": "static"}, "how frames are masked")
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import attrs

from ..errors import ConfigError

_MISSING = attrs.NOTHING


def field(default: Any = _MISSING, help: str = "", *, validator=None, factory=None, **metadata):
    """An attrs field with help text. Mutable defaults (lists, dicts) become factories."""
    md = {"help": help, **metadata}
    if factory is not None:
        return attrs.field(factory=factory, validator=validator, metadata=md)
    if isinstance(default, (list, dict, set)):
        value = default
        return attrs.field(factory=lambda: type(value)(value), validator=validator, metadata=md)
    return attrs.field(default=default, validator=validator, metadata=md)


def _bounded(lo: float | None, hi: float | None):
    def check(instance, attribute, value):
        if value is None:
            return
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError("must be a number, found nan.", key=attribute.name)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"between {lo} and {hi}" if lo is not None and hi is not None else \
                (f">= {lo}" if lo is not None else f"<= {hi}")
            raise ConfigError(f"must be {span}, found {value}.", key=attribute.name)
    return check


def size(default: Any = _MISSING, lo: int = 0, hi: int = 1 << 20, help: str = ""):
    """A bounded integer field (sizes, counts, steps)."""
    return field(default, help, validator=_bounded(lo, hi), lo=lo, hi=hi)


def real(default: Any = _MISSING, lo: float | None = None, hi: float | None = None, help: str = ""):
    """A (optionally bounded) float field; YAML's ``3e-5`` (read as a string) is accepted."""
    return field(default, help, validator=_bounded(lo, hi), lo=lo, hi=hi)


def choice(default: Any = _MISSING, help: str = ""):
    """A ``Literal[...]`` field; the annotation lists the choices."""
    return field(default, help)


def component(kind: str, default: Mapping[str, Any] | None = None, help: str = "",
              optional: bool = True):
    """A nested ``{name: ..., ...}`` reference to a registered component of ``kind``.

    Annotate the field as ``ComponentSpec | None``. ``default`` is a raw
    mapping (``{"name": "static"}``) structured when the config is built.
    """
    md = {"help": help, "component_kind": kind, "component_default": default}
    if default is None:
        return attrs.field(default=None, metadata=md)
    raw = dict(default)

    def make():
        from .structure import structure_component
        return structure_component(kind, raw, path=kind)

    return attrs.field(factory=make, metadata=md)


def components(kind: str, help: str = ""):
    """A mapping of named component sections of ``kind`` (``{greedy: {name: ctc_greedy}}``);
    annotate as ``dict[str, ComponentSpec]``."""
    return attrs.field(factory=dict, metadata={"help": help, "component_kind": kind,
                                               "component_container": dict})


def check(condition: bool, key: str, message: str, hint: str | None = None) -> None:
    """Cross-field check for ``__attrs_post_init__``: raise a ConfigError at ``key``."""
    if not condition:
        raise ConfigError(message, key=key, hint=hint)
