"""YAML with a memory of where every key came from.

:func:`load_yaml` returns plain Python data plus a :class:`SourceMap` from key
paths (``("model", "quantizer", "num_vars")``) to ``file:line``, so every
config error can point at the line the user wrote.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

Path_ = tuple[str, ...]


class SourceMap:
    """Key path -> ``file:line``; paths not recorded fall back to their nearest ancestor."""

    def __init__(self, entries: dict[Path_, str] | None = None) -> None:
        self.entries: dict[Path_, str] = dict(entries or {})

    def where(self, path: Path_ | str) -> str | None:
        if isinstance(path, str):
            path = tuple(p for p in path.split(".") if p)
        path = tuple(path)
        while True:
            if path in self.entries:
                return self.entries[path]
            if not path:
                return None
            path = path[:-1]

    def set(self, path: Path_, where: str) -> None:
        self.entries[tuple(path)] = where

    def drop(self, path: Path_) -> None:
        n = len(path)
        for p in [p for p in self.entries if p[:n] == tuple(path)]:
            del self.entries[p]

    def rebase(self, prefix: Path_) -> "SourceMap":
        """The same entries moved under ``prefix``."""
        return SourceMap({tuple(prefix) + p: w for p, w in self.entries.items()})

    def update(self, other: "SourceMap") -> None:
        self.entries.update(other.entries)

    def copy(self) -> "SourceMap":
        return SourceMap(self.entries)


# YAML 1.1 needs a dot in floats; accept `3e-5` as a float like YAML 1.2 does.
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$")


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


#: Most values one YAML document may expand to. Aliases (``*name``) repeat their anchor's
#: content, so nested aliases grow exponentially ("billion laughs": 329 bytes, 1.3 GB); the
#: largest shipped recipe has a few hundred values.
MAX_VALUES = 100_000


class _Budget:
    """Counts the values constructed from one document; stops past :data:`MAX_VALUES`."""

    def __init__(self, file: str, limit: int = MAX_VALUES) -> None:
        self.file, self.limit, self.used = file, limit, 0

    def spend(self, path: Path_, srcmap: SourceMap) -> None:
        self.used += 1
        if self.used > self.limit:
            raise ConfigError(
                f"the YAML expands to more than {self.limit:,} values: aliases (`*name`) copy "
                f"their anchor's content, and aliases nested inside anchors multiply it.",
                where=srcmap.where(path[:1]) or self.file, key=path[0] if path else None,
                hint="Share sections with `base:` inheritance or fewer nested aliases.")


def _construct(node: yaml.Node, loader: _Loader, path: Path_, file: str, srcmap: SourceMap,
               budget: _Budget) -> Any:
    srcmap.set(path, f"{file}:{node.start_mark.line + 1}")
    budget.spend(path, srcmap)
    if isinstance(node, yaml.MappingNode):
        explicit = [k for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        loader.flatten_mapping(node)  # YAML merge keys (`<<: *anchor`); explicit keys win
        out: dict[str, Any] = {}
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if any(key_node is k for k in explicit):
                if key in seen:
                    raise ConfigError(f"duplicate key `{key}`.",
                                      where=f"{file}:{key_node.start_mark.line + 1}",
                                      key=".".join(path + (key,)))
                seen.add(key)
            srcmap.drop(path + (key,))
            out[key] = _construct(value_node, loader, path + (key,), file, srcmap, budget)
            srcmap.set(path + (key,), f"{file}:{key_node.start_mark.line + 1}")
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, loader, path + (str(i),), file, srcmap, budget)
                for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, file: str = "<string>") -> tuple[Any, SourceMap]:
    """Parse YAML text; syntax errors become a ConfigError with the line."""
    srcmap = SourceMap()
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, srcmap
        return _construct(node, loader, (), file, srcmap, _Budget(file)), srcmap
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}" if mark else file
        raise ConfigError(f"YAML syntax error: {exc.problem or exc}"
                          f"{' ' + exc.context if exc.context else ''}.", where=where,
                          hint="Check indentation, colons and quoting on that line.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", where=file) from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> tuple[Any, SourceMap]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"recipe file `{path}` does not exist.") from None
    except OSError as exc:
        raise ConfigError(f"cannot read recipe file `{path}`: {exc.strerror}.") from None
    return parse_yaml(text, str(path))


def parse_value(text: str) -> Any:
    """A command-line override value, parsed as YAML (``64``, ``[1, 2]``, ``3e-5``, ``null``)."""
    value, _ = parse_yaml(text, "command line")
    return value
