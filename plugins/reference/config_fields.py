"""A config class's fields as reference rows: option, type, default, bounds and help, read
from the attrs metadata every config carries (:mod:`w2v.config.fields`). Nested config
classes are flattened into dotted options (``schedule.warmup``, ``param_groups.<name>.lr_scale``)."""

from __future__ import annotations

import enum
import types
import typing
from typing import Any, Literal, Union

import attrs

from w2v.config import ComponentSpec
from w2v.config.structure import yaml_name


@attrs.frozen
class FieldRow:
    """One option of a config: dotted name, type, default, bounds and help, as text."""

    option: str
    type: str
    default: str
    bounds: str
    help: str


def type_text(tp: Any) -> str:
    """An annotation as a reader writes it: ``int | None``, ``'fail' | 'skip'``, ``list[int]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if tp is ComponentSpec:
        return "component"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if origin is tuple and args and args[-1] is Ellipsis:
            return f"tuple[{type_text(args[0])}, ...]"
        return f"{name}[{', '.join(type_text(a) for a in args)}]" if args else name
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def yaml_text(value: Any) -> str:
    """A default as it would be written in YAML (``null``, ``true``, ``[1, 2]``, ``{}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return yaml_text(value.value)
    if isinstance(value, ComponentSpec):
        return f"{{name: {value.name}}}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_text(v)}" for k, v in value.items()) + "}"
    if attrs.has(type(value)):
        return "(fields below)"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def default_text(f: attrs.Attribute) -> str:
    if "component_kind" in f.metadata:
        if f.metadata.get("component_container") is dict:
            return "{}"
        default = f.metadata.get("component_default")
        return f"{{name: {default['name']}}}" if default else "null"
    if f.default is attrs.NOTHING:
        return "(required)"
    if isinstance(f.default, attrs.Factory):
        return yaml_text(f.default.factory())
    return yaml_text(f.default)


def bounds_text(f: attrs.Attribute) -> str:
    lo, hi = (_number(f.metadata.get(k)) for k in ("lo", "hi"))
    if lo is None and hi is None:
        return ""
    if lo is None:
        return f"<= {hi}"
    if hi is None:
        return f">= {lo}"
    return f"{lo} .. {hi}"


def _number(value: Any) -> str | None:
    if value is None:
        return None
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _nested(tp: Any) -> tuple[type | None, str]:
    """The attrs config class inside an annotation and the path part it adds: ``X`` -> ``""``,
    ``X | None`` -> ``""``, ``dict[str, X]`` -> ``.<name>``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and attrs.has(tp):
        return tp, ""
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _nested(inner[0])
    if origin is dict and len(args) == 2 and isinstance(args[1], type) and attrs.has(args[1]):
        return args[1], ".<name>"
    return None, ""


def field_rows(cls: type, prefix: str = "") -> list[FieldRow]:
    """Every option of ``cls`` (an attrs config class), nested configs flattened after their
    own row."""
    attrs.resolve_types(cls)
    rows = []
    for f in attrs.fields(cls):
        if not f.init:
            continue
        option = prefix + yaml_name(f.name)
        kind = f.metadata.get("component_kind")
        tp = f"{kind} component" if kind else type_text(f.type)
        if kind and f.metadata.get("component_container") is dict:
            tp = f"dict[str, {kind} component]"
        rows.append(FieldRow(option, tp, default_text(f), bounds_text(f),
                             " ".join(f.metadata.get("help", "").split())))
        nested, part = _nested(f.type)
        if nested is not None and not kind:
            rows += field_rows(nested, f"{option}{part}.")
    return rows


def markdown_table(rows: list[FieldRow]) -> list[str]:
    """The rows as a Markdown table (``|`` inside cells escaped)."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| option | type | default | bounds | help |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| `{esc(r.option)}` | `{esc(r.type)}` | `{esc(r.default)}` | "
                     f"{esc(r.bounds)} | {esc(r.help)} |")
    return lines
