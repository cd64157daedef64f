"""Recipes: YAML files with ``base:`` inheritance, dotted overrides, env interpolation and stages.

Resolution order: the recipe's ``base:`` chain (paths relative to the file
that names them) is merged parent-first; then command-line overrides; then
``${VAR:-default}`` interpolation. Merging is deep, except that a section
whose ``name`` changes is replaced (switching ``gumbel`` to ``kmeans`` does
not inherit ``temp``) and ``null`` deletes a key.

Each stage sees the top-level sections with its own sections merged on top
(same rules); the stage's remaining keys are its own config. A top-level
``fairseq_compat: true`` (:data:`INHERITED`) is passed to every stage, which may
set its own.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import attrs

from ..errors import ConfigError, did_you_mean
from .source import SourceMap, load_yaml, parse_value

#: Sections a stage inherits from the top level and may override.
SECTIONS = ("data", "model", "objective", "decoder", "trainer")
#: Recipe-wide values: each stage inherits them (and may set its own); every component and
#: stage config with a field of that name takes the value unless its section sets the field.
INHERITED = ("fairseq_compat",)
_STAGE_KEYS = (*SECTIONS, *INHERITED)
TOP_LEVEL = ("base", "stages", *SECTIONS, *INHERITED)
#: The name a section has when it names none (``data:`` is fairseq manifests): switching
#: to another name replaces the section instead of merging into it.
_DEFAULT_NAMES = {("data",): "fairseq"}


@attrs.define
class RawRecipe:
    """A merged recipe before structuring: plain data plus where each key came from."""

    data: dict[str, Any]
    srcmap: SourceMap
    path: Path | None = None
    files: list[Path] = attrs.field(factory=list)


# ----------------------------------------------------------------- merging
def merge(base: Any, over: Any, path: tuple[str, ...], srcmap: SourceMap,
          over_map: SourceMap) -> Any:
    """Merge ``over`` onto ``base`` (recipe rules); ``srcmap`` is updated in place."""
    if isinstance(base, dict) and isinstance(over, dict):
        default = _DEFAULT_NAMES.get(path[-1:]) if path else None
        replaced = "name" in over and over["name"] != base.get("name", default) and \
            ("name" in base or default is not None)
        if not replaced:
            out = dict(base)
            for key, value in over.items():
                sub = path + (key,)
                if value is None and _kept_null(sub):
                    out[key] = None
                    _take(srcmap, over_map, sub)
                    continue
                if value is None:
                    out.pop(key, None)
                    srcmap.drop(sub)
                    where = over_map.where(sub)
                    if where:
                        srcmap.set(sub, where)
                    continue
                if key in out:
                    out[key] = merge(out[key], value, sub, srcmap, over_map)
                else:
                    out[key] = copy.deepcopy(value)
                    _take(srcmap, over_map, sub)
            where = over_map.entries.get(path)
            if where:
                srcmap.set(path, where)
            return out
    _take(srcmap, over_map, path)
    return copy.deepcopy(over)


def _kept_null(path: tuple[str, ...]) -> bool:
    """A ``null`` inside a stage's body (``stages.ID.model.quantizer: null``) survives a
    ``base:`` merge: it still has to switch the top-level value off when the stage's
    sections are merged (:func:`stage_sections`). A stage set to ``null`` is switched off
    but keeps its place in the order, so a later recipe or override that sets it again
    runs it there, not after every other stage."""
    return len(path) >= 2 and path[0] == "stages"


def _take(srcmap: SourceMap, over_map: SourceMap, path: tuple[str, ...]) -> None:
    srcmap.drop(path)
    n = len(path)
    for p, w in over_map.entries.items():
        if p[:n] == path:
            srcmap.set(p, w)


# ----------------------------------------------------------------- loading
def _load_with_bases(path: Path, chain: tuple[Path, ...], files: list[Path]) -> tuple[dict, SourceMap]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in chain + (path,))
        raise ConfigError(f"`base:` inheritance forms a cycle: {cycle}.",
                          where=str(chain[-1]), key="base",
                          hint="Remove one of the `base:` lines so the chain ends.")
    data, srcmap = load_yaml(path)
    files.append(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("a recipe must be a YAML mapping of sections.", where=f"{path}:1")
    for key in data:
        if key not in TOP_LEVEL:
            raise ConfigError("unknown top-level section.", where=srcmap.where((key,)), key=key,
                              hint=did_you_mean(key, list(TOP_LEVEL), "sections"))
    bases = data.pop("base", None)
    if bases is None:
        return data, srcmap
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError("`base:` must be a path or a list of paths.", where=srcmap.where(("base",)),
                          key="base")
    merged: dict[str, Any] = {}
    merged_map = SourceMap()
    for b in bases:
        target = (path.parent / os.path.expandvars(b))
        if not target.exists():
            raise ConfigError(f"base recipe `{b}` does not exist (looked for {target}).",
                              where=srcmap.where(("base",)), key="base",
                              hint="Paths in `base:` are relative to the file that names them.")
        bdata, bmap = _load_with_bases(target, chain + (path,), files)
        merged = merge(merged, bdata, (), merged_map, bmap)
    merged = merge(merged, data, (), merged_map, srcmap)
    return merged, merged_map


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> RawRecipe:
    """Load a recipe file with its ``base:`` chain, apply overrides and interpolation."""
    path = Path(path)
    files: list[Path] = []
    data, srcmap = _load_with_bases(path, (), files)
    raw = RawRecipe(data=data, srcmap=srcmap, path=path, files=files)
    for item in overrides:
        apply_override(raw, item)
    raw.data = interpolate(raw.data, (), raw.srcmap)
    return raw


def recipe_from_dict(data: Mapping[str, Any], overrides: Sequence[str] = ()) -> RawRecipe:
    """A recipe given as Python data (tests, notebooks)."""
    raw = RawRecipe(data=copy.deepcopy(dict(data)), srcmap=SourceMap())
    for item in overrides:
        apply_override(raw, item)
    raw.data = interpolate(raw.data, (), raw.srcmap)
    return raw


# --------------------------------------------------------------- overrides
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")


def apply_override(raw: RawRecipe, item: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to ``raw`` in place."""
    where = f"command line (`{item}`)"
    if "=" not in item:
        raise ConfigError(f"malformed override `{item}`: expected `key.path=value`.",
                          where="command line",
                          hint="Example: `model.quantizer.num_vars=64` or `trainer.lr=3e-5`.")
    key, text = item.split("=", 1)
    key = key.strip()
    if not _KEY.match(key):
        raise ConfigError(f"malformed override key `{key}`: expected dotted names like "
                          f"`model.quantizer.num_vars`.", where="command line")
    path = tuple(key.split("."))
    if path[0] not in TOP_LEVEL or path[0] == "base":
        raise ConfigError("unknown top-level section in override.", where=where, key=key,
                          hint=did_you_mean(path[0], [s for s in TOP_LEVEL if s != "base"],
                                            "sections"))
    value = parse_value(text) if text.strip() else ""
    node: Any = raw.data
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part) if isinstance(node, dict) else None
        if nxt is None:
            nxt = {}
            node[part] = nxt
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set `{key}`: `{'.'.join(path[:i + 1])}` is "
                              f"{type(nxt).__name__}, not a section.", where=where, key=key)
        node = nxt
    leaf = path[-1]
    if leaf == "name" and node.get("name") not in (None, value):
        node.clear()  # a component switched by name starts from its own defaults
        raw.srcmap.drop(path[:-1])
    over_map = SourceMap({path: where})
    if isinstance(value, dict):
        for sub in _paths(value):
            over_map.set(path + sub, where)
    if value is None:
        if _kept_null(path) and len(path) == 2:
            node[leaf] = None     # switched off, in its place (see _kept_null)
        else:
            node.pop(leaf, None)
        raw.srcmap.drop(path)
        raw.srcmap.set(path, where)
    elif leaf in node:
        node[leaf] = merge(node[leaf], value, path, raw.srcmap, over_map)
    else:
        node[leaf] = value
        _take(raw.srcmap, over_map, path)


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    return out


# ----------------------------------------------------------- interpolation
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


def interpolate(value: Any, path: tuple[str, ...], srcmap: SourceMap) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, path + (k,), srcmap) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, path + (str(i),), srcmap) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3)
        if name in os.environ:
            return os.environ[name]
        if m.group(2) is not None:
            return default
        raise ConfigError(f"environment variable `{name}` is not set.", where=srcmap.where(path),
                          key=".".join(path),
                          hint=f"Set it (`export {name}=...`) or give a default: `${{{name}:-...}}`.")

    return _VAR.sub(sub, value)


# ------------------------------------------------------------------ stages
def _default_stages(raw: RawRecipe) -> dict[str, Any]:
    """``{id: {name: id}}`` for the stage a plugin registered as the default."""
    from ..plugin_manager import registry

    default = registry().default_stage
    if default is None:
        raise ConfigError("the recipe has no `stages:` and no plugin provides a default stage.",
                          where=raw.srcmap.where(()), key="stages",
                          hint="Add `stages: {train: {name: train}}` (see `w2vrun list stage`).")
    return {default[0]: {"name": default[0]}}


def stage_sections(raw: RawRecipe) -> dict[str, tuple[dict[str, Any], dict[str, Any], SourceMap]]:
    """For each stage id: (effective sections, the stage's own keys, source map).

    The effective sections are the top-level ones with the stage's overrides
    merged on top; the stage's own keys (``name``, ``init``, ...) configure it.
    """
    stages = raw.data.get("stages")
    if stages is None:
        stages = _default_stages(raw)
    if not isinstance(stages, dict) or not any(b is not None for b in stages.values()):
        raise ConfigError("`stages:` must map stage ids to stage sections.",
                          where=raw.srcmap.where(("stages",)), key="stages")
    top = {k: raw.data[k] for k in _STAGE_KEYS if k in raw.data}
    out = {}
    for sid, body in stages.items():
        if body is None:
            continue
        if isinstance(body, str):
            body = {"name": body}
        if not isinstance(body, dict):
            raise ConfigError("a stage must be a mapping with `name:`.",
                              where=raw.srcmap.where(("stages", sid)), key=f"stages.{sid}")
        smap = raw.srcmap.copy()
        own_map = SourceMap({p[2:]: w for p, w in raw.srcmap.entries.items()
                             if p[:2] == ("stages", sid) and len(p) > 2})
        sections = {k: copy.deepcopy(v) for k, v in top.items()}
        stage_map = SourceMap({p: w for p, w in smap.entries.items() if p and p[0] in _STAGE_KEYS})
        for k in _STAGE_KEYS:
            if k in body:
                if body[k] is None:
                    sections.pop(k, None)
                    continue
                sections[k] = merge(sections.get(k, {}), body[k], (k,), stage_map, own_map)
                if k not in top:
                    _take(stage_map, own_map, (k,))
        own = {k: v for k, v in body.items() if k not in _STAGE_KEYS}
        own_keys_map = SourceMap({p: w for p, w in own_map.entries.items() if p and p[0] not in _STAGE_KEYS})
        stage_map.update(own_keys_map.rebase(("stages", sid)))
        out[str(sid)] = (sections, own, stage_map)
    return out
