"""The import graph keeps its shape (docs/architecture.md): no import cycle between modules, the
core imports no plugin, no paper family imports another, and every import from one plugin
family into another is an arrow of the "Plugin families" table of docs/architecture.md.

Imports are read with `ast` from every module of core/ and plugins/, including imports inside
functions (a lazy import is still a dependency). ``python tests/test_architecture.py`` prints
the arrows between families as they stand.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "w2v", "plugins": "w2v.plugins"}
KINDS = ("role", "paper", "tool")
TABLE_HEADING = "## Plugin families"


# ----------------------------------------------------------------------------- reading the code
def modules(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under core/ (``w2v``) and plugins/
    (``w2v.plugins``); a package is its ``__init__.py``."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> dict[str, int]:
    """``{imported w2v module: first line}`` of one module; ``from pkg import x`` counts as an
    import of ``pkg.x`` when that is a module, else of ``pkg``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in known else source
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:          # `import w2v.x.y` of a package
                target = target.rpartition(".")[0]
            if target and target != name:
                found.setdefault(target, node.lineno)
    return found


def import_graph(root: Path = ROOT) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    files = modules(root)
    known = set(files)
    return {name: imports(name, path, known) for name, path in files.items()}, files


def family(module: str) -> str:
    """``core`` or the plugin family a module belongs to (``w2v.plugins.ctc.lm`` -> ``ctc``)."""
    parts = module.split(".")
    if parts[:2] != ["w2v", "plugins"]:
        return "core"
    return parts[2] if len(parts) > 2 else "plugins"


def family_arrows(graph) -> dict[tuple[str, str], list[str]]:
    """``{(family, imported family): ["module -> module", ...]}`` between distinct families."""
    arrows: dict[tuple[str, str], list[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            a, b = family(source), family(target)
            if a != b:
                arrows.setdefault((a, b), []).append(f"{source} -> {target}")
    return arrows


def cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# ----------------------------------------------------------------------------- the documented table
def allowed_table(page: Path = ROOT / "docs" / "architecture.md") -> dict[str, tuple[str, set[str]]]:
    """``{family: (kind, families it may import besides core)}`` from the table under
    ``## Plugin families`` (columns: family, kind, may import, ...)."""
    text = page.read_text()
    assert TABLE_HEADING in text, f"{page} has no `{TABLE_HEADING}` section"
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    table: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 3:
            continue
        name = cells[0].strip("`")
        if cells[1] not in KINDS:
            continue                                # header and separator rows
        table[name] = (cells[1], set(re.findall(r"`([a-z0-9_]+)`", cells[2])))
    assert table, f"no rows found in the `{TABLE_HEADING}` table of {page}"
    return table


@pytest.fixture(scope="module")
def graph():
    return import_graph()[0]


@pytest.fixture(scope="module")
def table():
    return allowed_table()


# ----------------------------------------------------------------------------- the rules
def test_no_import_cycle(graph):
    found = cycles(graph)
    shown = ["; ".join(f"{a} -> {b} (line {graph[a][b]})" for a in group for b in graph[a]
                       if b in group) for group in found]
    assert not found, "modules that import each other (directly or through others): " + \
        " | ".join(shown)


def test_core_imports_no_plugin(graph):
    bad = [f"{m} -> {t} (line {line})" for m, targets in graph.items() if family(m) == "core"
           for t, line in targets.items() if family(t) != "core"]
    assert not bad, f"the core must not import plugins: {bad}"


def test_every_plugin_family_is_in_the_table(table):
    families = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists())
    missing = [f for f in families if f not in table]
    assert not missing, (f"add these plugin families to the `{TABLE_HEADING}` table of "
                         f"docs/architecture.md (kind and what they may import): {missing}")


def test_no_paper_family_imports_another(graph, table):
    papers = {f for f, (kind, _) in table.items() if kind == "paper"}
    bad = [line for (a, b), lines in family_arrows(graph).items() if a in papers and b in papers
           for line in lines]
    assert not bad, ("paper families must not import each other; move what they share to a "
                     f"role family: {bad}")
    allowed = [(f, b) for f, (kind, targets) in table.items() if kind == "paper"
               for b in targets if b in papers]
    assert not allowed, f"the table allows paper -> paper arrows: {allowed}"


def test_every_arrow_between_families_is_in_the_table(graph, table):
    bad = [f"{a} -> {b}: {lines[0]}" + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")
           for (a, b), lines in sorted(family_arrows(graph).items())
           if a != "core" and b != "core" and b not in table.get(a, ("", set()))[1]]
    assert not bad, ("imports between plugin families that docs/architecture.md does not allow "
                     "(add the arrow to its table only if it keeps the layering; otherwise move "
                     f"the code): {bad}")


def test_the_table_has_no_cycle(table):
    arrows = {f: {b: 0 for b in targets} for f, (_, targets) in table.items()}
    found = cycles(arrows)
    assert not found, f"the allowed arrows of docs/architecture.md form a cycle: {found}"
    roles = {f for f, (kind, _) in table.items() if kind == "role"}
    up = [(f, b) for f in roles for b in table[f][1] if table.get(b, ("role",))[0] != "role"]
    assert not up, f"a role family may import only role families: {up}"


# ----------------------------------------------------------------------------- the checker itself
def test_the_checker_sees_lazy_imports_cycles_and_relative_imports(tmp_path):
    """A tiny tree: a lazy import inside a function closes a cycle through a relative import;
    a package import resolves to its submodule."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    fam = tmp_path / "plugins" / "fam"
    fam.mkdir(parents=True)
    (tmp_path / "plugins" / "__init__.py").write_text("")
    (fam / "__init__.py").write_text("")
    (fam / "a.py").write_text("from . import b\n")
    (fam / "b.py").write_text("def f():\n    from w2v.plugins.fam.a import x\n")
    (fam / "c.py").write_text("import w2v.plugins.fam.b\nfrom w2v import hookimpl\n")
    graph, _ = import_graph(tmp_path)
    assert graph["w2v.plugins.fam.a"] == {"w2v.plugins.fam.b": 1}
    assert graph["w2v.plugins.fam.b"] == {"w2v.plugins.fam.a": 2}
    assert graph["w2v.plugins.fam.c"] == {"w2v.plugins.fam.b": 1, "w2v": 2}
    assert cycles(graph) == [["w2v.plugins.fam.a", "w2v.plugins.fam.b"]]
    assert family_arrows(graph) == {("fam", "core"): ["w2v.plugins.fam.c -> w2v"]}


def test_the_table_parser_reads_kinds_and_arrows(tmp_path):
    page = tmp_path / "architecture.md"
    page.write_text("# x\n\n## Plugin families\n\n| family | kind | may import | holds |\n"
                    "| --- | --- | --- | --- |\n| `ctc` | role | — | CTC |\n"
                    "| `stages` | role | `ctc`, `data` | stages |\n\n## Next\n| `no` | role | x |\n")
    assert allowed_table(page) == {"ctc": ("role", set()), "stages": ("role", {"ctc", "data"})}


if __name__ == "__main__":
    arrows = family_arrows(import_graph()[0])
    for (a, b), lines in sorted(arrows.items()):
        if a != "core" and b != "core":
            print(f"{a} -> {b}  ({len(lines)} imports)")
