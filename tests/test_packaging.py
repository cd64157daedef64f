"""Packaging: pyproject lists every package and plugin family; the installed entry points work."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"core": "w2v", "plugins": "w2v.plugins"}
HOOK_NAMES = {"w2v_register_kinds", "w2v_register_components", "w2v_register_checkpoint_formats",
              "w2v_register_commands"}


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_folders() -> dict[str, Path]:
    """``{w2v package name: folder}`` of every folder with an ``__init__.py`` in core/, plugins/."""
    found = {}
    for folder, name in FOLDERS.items():
        base = ROOT / folder
        for init in sorted(base.rglob("__init__.py")):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found[".".join((name, *rel.parts)) if rel.parts else name] = init.parent
    return found


def defines_hooks(init: Path) -> bool:
    tree = ast.parse(init.read_text())
    return any(isinstance(node, ast.FunctionDef) and node.name in HOOK_NAMES
               for node in tree.body)


def test_package_dir_maps_the_two_folders(pyproject):
    assert pyproject["tool"]["setuptools"]["package-dir"] == {"w2v": "core",
                                                              "w2v.plugins": "plugins"}


def test_every_package_folder_is_listed(pyproject):
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    folders = package_folders()
    assert "w2v" in folders and "w2v.plugins" in folders
    missing = sorted(set(folders) - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_listed_package_exists(pyproject):
    stale = sorted(set(pyproject["tool"]["setuptools"]["packages"]) - set(package_folders()))
    assert not stale, f"listed in pyproject.toml but no folder with __init__.py: {stale}"


def test_every_plugin_family_with_hooks_has_an_entry_point(pyproject):
    declared = pyproject["project"]["entry-points"]["w2v"]
    targets = set(declared.values())
    families = {f"w2v.plugins.{p.name}": p for p in sorted((ROOT / "plugins").iterdir())
                if (p / "__init__.py").exists()}
    with_hooks = sorted(name for name, p in families.items() if defines_hooks(p / "__init__.py"))
    assert with_hooks, "no plugin family defines hooks"
    missing = [name for name in with_hooks if name not in targets]
    assert not missing, f"add to [project.entry-points.w2v] in pyproject.toml: {missing}"
    for ep_name, target in declared.items():
        assert target in families, f"entry point {ep_name} = {target} names no plugin family"


def test_entry_points_are_installed(pyproject):
    """The installed metadata matches pyproject (an editable install may be stale)."""
    declared = pyproject["project"]["entry-points"]["w2v"]
    installed = {ep.name: ep.value for ep in metadata.entry_points(group="w2v")
                 if ep.dist is not None and ep.dist.name == "w2v"}
    assert installed == declared, ("installed entry points differ from pyproject.toml: "
                                   "reinstall with `pip install -e .`")


def test_console_script_declared(pyproject):
    assert pyproject["project"]["scripts"]["w2vrun"] == "w2v.cli:main"


def test_import_w2v():
    import w2v

    assert Path(w2v.__file__).resolve().parent == ROOT / "core"
    assert callable(w2v.load_pretrained) and w2v.hookimpl is not None
    import w2v.plugins

    assert Path(w2v.plugins.__file__).resolve().parent == ROOT / "plugins"


def test_w2vrun_help_exits_0():
    script = Path(sys.executable).parent / "w2vrun"
    if not script.exists():
        pytest.skip(f"w2vrun is not installed beside {sys.executable}")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage: w2vrun" in proc.stdout and "--dry-run" in proc.stdout
    assert "Traceback" not in proc.stderr
