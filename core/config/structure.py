"""Strict structuring of YAML data into attrs configs.

Unlike a default cattrs converter, nothing is coerced: ``2.7`` is not an int,
``true`` is not 1, ``"no"`` is not a bool. Unknown keys, missing keys, wrong
types, out-of-range values and failed cross-field checks all become a
:class:`~w2v.errors.ConfigError` naming the recipe file and line, the key path
and the nearest valid choice. Fields annotated :class:`ComponentSpec` (see
:func:`w2v.config.component`) hold nested ``{name: ...}`` component
references, structured through the registry at any depth.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from typing import Any, Literal, Mapping, Union

import attrs

from ..errors import ConfigError, UserError, did_you_mean
from .source import SourceMap
from .spec import ComponentSpec

_FLOAT_TEXT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


class _Ctx:
    def __init__(self, srcmap: SourceMap | None, prefix: tuple[str, ...],
                 inherited: Mapping[str, Any] | None = None):
        self.srcmap = srcmap or SourceMap()
        self.prefix = prefix
        #: recipe-wide values (``fairseq_compat``) for every config, at any depth, that has a
        #: field of that name and does not set it
        self.inherited = dict(inherited or {})

    def error(self, path: tuple[str, ...], message: str, hint: str | None = None) -> ConfigError:
        full = self.prefix + path
        return ConfigError(message, where=self.srcmap.where(full), key=".".join(full) or None,
                           hint=hint)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple, typing.Sequence):
        return "a list"
    if origin in (dict, typing.Mapping):
        return "a mapping"
    if attrs.has(tp):
        return "a mapping"
    if tp is ComponentSpec:
        return "a component mapping with `name:`"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    if value is None:
        text = "null"
    return text if len(text) < 60 else text[:57] + "..."


def _structure(value: Any, tp: Any, path: tuple[str, ...], ctx: _Ctx, meta: Mapping | None = None
               ) -> Any:
    meta = meta or {}
    if "component_kind" in meta:
        if value is None:
            return None
        kind = meta["component_kind"]
        if meta.get("component_container") is dict:
            if not isinstance(value, Mapping):
                raise ctx.error(path, f"expected a mapping of named {kind} sections, found "
                                      f"{_show(value)}.")
            return {str(k): _structure_component(kind, v, path + (str(k),), ctx)
                    for k, v in value.items()}
        return _structure_component(kind, value, path, ctx)
    if tp is Any or tp is typing.Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ctx.error(path, f"must not be null; expected {_type_name(tp)}.")
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _structure(value, option, path, ctx)
            except ConfigError as exc:
                errors.append(exc)
        if len(options) == 1:
            raise errors[0]
        raise ctx.error(path, f"expected {_type_name(tp)}, found {_show(value)}.")
    if tp is ComponentSpec:
        raise ctx.error(path, "component fields must be declared with w2v.config.component().")
    if value is None:
        raise ctx.error(path, f"must not be null; expected {_type_name(tp)}.")
    if origin is Literal:
        if value in args and all(type(value) is type(a) for a in args if a == value):
            return value
        hint = did_you_mean(str(value), [str(a) for a in args]) if isinstance(value, str) \
            else f"Valid choices: {', '.join(repr(a) for a in args)}."
        raise ctx.error(path, f"invalid choice {_show(value)}.", hint)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ctx.error(path, f"expected true or false, found {_show(value)}.")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ctx.error(path, f"expected an integer, found {_show(value)}.")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) or \
                isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            try:
                return float(value)
            except OverflowError:
                raise ctx.error(path, f"number too large, found {_show(value)}.") from None
        raise ctx.error(path, f"expected a number, found {_show(value)}.")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ctx.error(path, f"expected a string, found {_show(value)}.",
                        "Quote the value if it is meant as text.")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ctx.error(path, f"invalid choice {_show(value)}.",
                            did_you_mean(str(value), [str(m.value) for m in tp])) from None
    if origin in (list, typing.Sequence, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ctx.error(path, f"expected a list, found {_show(value)}.")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ctx.error(path, f"expected a list of {len(args)} items, found {len(value)}.")
            return tuple(_structure(v, a, path + (str(i),), ctx) for i, (v, a) in
                         enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_structure(v, item, path + (str(i),), ctx) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ctx.error(path, f"expected a mapping, found {_show(value)}.")
        kt, vt = args if args else (Any, Any)
        return {_structure(k, kt, path, ctx): _structure(v, vt, path + (str(k),), ctx)
                for k, v in value.items()}
    if attrs.has(tp):
        return _structure_attrs(value, tp, path, ctx)
    raise ctx.error(path, f"cannot structure type {tp!r} (a bug in the component's config).")


def _structure_attrs(value: Any, cls: type, path: tuple[str, ...], ctx: _Ctx) -> Any:
    if attrs.has(type(value)) and isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ctx.error(path, f"expected a mapping of {cls.__name__} fields, found {_show(value)}.")
    attrs.resolve_types(cls)
    # a field named `from_` is written `from` in YAML (Python keywords need the underscore)
    fields = {yaml_name(f.name): f for f in attrs.fields(cls) if f.init}
    kwargs = {}
    for key, raw in value.items():
        if key not in fields:
            raise ctx.error(path + (str(key),), "unknown key.",
                            did_you_mean(str(key), list(fields), "keys"))
        f = fields[key]
        kwargs[f.alias or f.name] = _structure(raw, f.type, path + (key,), ctx, f.metadata)
    for key, f in fields.items():
        if key in value:
            continue
        if key in ctx.inherited:
            kwargs[f.alias or f.name] = _structure(ctx.inherited[key], f.type, (key,),
                                                   _Ctx(ctx.srcmap, ()), f.metadata)
        elif ctx.inherited and f.metadata.get("component_default") is not None:
            # a default sub-component inherits too (structured here, not by its factory)
            kwargs[f.alias or f.name] = _structure_component(
                f.metadata["component_kind"], dict(f.metadata["component_default"]),
                path + (key,), ctx)
    missing = [n for n, f in fields.items() if f.default is attrs.NOTHING and n not in value]
    if missing:
        name = missing[0]
        help_ = fields[name].metadata.get("help", "")
        raise ctx.error(path + (name,), "required key is missing.",
                        f"Add `{name}:` ({help_})." if help_ else f"Add `{name}:`.")
    try:
        return cls(**kwargs)
    except UserError as exc:
        sub = tuple(exc.key.split(".")) if exc.key else ()
        raise ctx.error(path + sub, exc.message, exc.hint) from None
    except (TypeError, ValueError) as exc:
        raise ctx.error(path, str(exc)) from None


def _structure_component(kind: str, value: Any, path: tuple[str, ...], ctx: _Ctx) -> ComponentSpec:
    from ..plugin_manager import registry

    if isinstance(value, ComponentSpec):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ctx.error(path, f"expected a {kind} section with `name:`, found {_show(value)}.")
    if "name" not in value:
        names = registry().names(kind)
        raise ctx.error(path + ("name",), f"the {kind} section has no `name:`.",
                        f"Choose one of: {', '.join(f'`{n}`' for n in names) or '(none registered)'}.")
    name = value["name"]
    if not isinstance(name, str):
        raise ctx.error(path + ("name",), f"expected a {kind} name, found {_show(name)}.")
    full = ctx.prefix + path
    reg = registry().get(kind, name, where=ctx.srcmap.where(full + ("name",)),
                         key=".".join(full + ("name",)))
    body = {k: v for k, v in value.items() if k != "name"}
    config = _structure_attrs(body, reg.config_cls, path, ctx)
    return ComponentSpec(kind=kind, name=name, config=config, key=".".join(full),
                         where=ctx.srcmap.where(full))


def yaml_name(field_name: str) -> str:
    """The YAML key of an attrs field: ``from_`` is written ``from``."""
    return field_name[:-1] if field_name.endswith("_") else field_name


def structure(value: Any, cls: Any, *, srcmap: SourceMap | None = None,
              path: tuple[str, ...] = (), inherited: Mapping[str, Any] | None = None) -> Any:
    """Structure raw YAML data into ``cls`` (an attrs class or a type), strictly.

    ``inherited`` (``{"fairseq_compat": True}``) fills the field of that name in every
    config, at any depth, that has one and whose section does not set it.
    """
    return _structure(value, cls, (), _Ctx(srcmap, tuple(path), inherited))


def structure_component(kind: str, value: Any, *, srcmap: SourceMap | None = None,
                        path: str | tuple[str, ...] = (),
                        inherited: Mapping[str, Any] | None = None) -> ComponentSpec:
    """Structure a ``{name: ..., ...}`` section into a :class:`ComponentSpec` (``inherited``
    as in :func:`structure`)."""
    if isinstance(path, str):
        path = tuple(p for p in path.split(".") if p)
    return _structure_component(kind, value, (), _Ctx(srcmap, tuple(path), inherited))


def unstructure(value: Any) -> Any:
    """Configs back to plain YAML data (``resolved.yaml``, checkpoints)."""
    if isinstance(value, ComponentSpec):
        return {"name": value.name, **unstructure(value.config)}
    if attrs.has(type(value)):
        return {yaml_name(f.name): unstructure(getattr(value, f.name))
                for f in attrs.fields(type(value))}
    if isinstance(value, (list, tuple)):
        return [unstructure(v) for v in value]
    if isinstance(value, dict):
        return {k: unstructure(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value
