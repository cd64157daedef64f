"""docs/reference/ is what `w2vrun docs` writes from the config classes today: regenerate it
into a temporary directory and compare, so a new or changed option cannot go undocumented."""

from __future__ import annotations

from pathlib import Path

import attrs

from w2v.config import field, size

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "reference"


def test_committed_reference_pages_are_current(run_cli, tmp_path):
    result = run_cli("docs", "--out", tmp_path)
    assert result.code == 0, result.err
    fresh = {p.name: p.read_text() for p in tmp_path.glob("*.md")}
    committed = {p.name: p.read_text() for p in COMMITTED.glob("*.md")}
    stale = sorted(name for name in fresh.keys() | committed.keys()
                   if fresh.get(name) != committed.get(name))
    assert not stale, (f"docs/reference/ is out of date ({', '.join(stale)}): run "
                       "`w2vrun docs --out docs/reference` and commit the pages.")


def test_every_component_option_is_on_its_kind_page(run_cli, tmp_path):
    from w2v.plugin_manager import registry

    run_cli("docs", "--out", tmp_path)
    for reg in (r for r in registry().all() if r.plugin.dist == "w2v"):
        page = (tmp_path / f"{reg.kind}.md").read_text()
        assert f"## `{reg.name}`" in page
        for f in attrs.fields(reg.config_cls):
            assert f"| `{f.name.rstrip('_')}` |" in page, (reg.kind, reg.name, f.name)


@attrs.define(kw_only=True)
class Inner:
    depth: int = size(2, 1, 8, "layers")


@attrs.define(kw_only=True)
class Toy:
    width: int = size(64, 1, 100_000, "channels | per layer")
    mode: str | None = field(None, "how")
    inner: dict[str, Inner] = field({}, "named blocks")


def test_rows_carry_type_default_bounds_and_help():
    from w2v.plugins.reference.config_fields import field_rows, markdown_table

    table = markdown_table(field_rows(Toy))
    assert table[2] == "| `width` | `int` | `64` | 1 .. 100,000 | channels \\| per layer |"
    assert table[3] == "| `mode` | `str \\| null` | `null` |  | how |"
    assert table[5] == "| `inner.<name>.depth` | `int` | `2` | 1 .. 8 | layers |"


def test_check_flags_a_drifted_page(run_cli, tmp_path):
    run_cli("docs", "--out", tmp_path)
    assert run_cli("docs", "--out", tmp_path, "--check").code == 0
    page = tmp_path / "quantizer.md"
    page.write_text(page.read_text().replace("entries V per group", "entries per group"))
    result = run_cli("docs", "--out", tmp_path, "--check")
    assert result.code == 1 and "quantizer.md" in result.out
