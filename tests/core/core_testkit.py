"""Helpers shared by the core tests (imported by module name; never ``from core_testkit import``,
since several test folders have their own ``conftest.py`` and the name is ambiguous).

- :func:`load_with_toy`: the real plugins plus ``toy_plugin``, freshly loaded.
- :func:`run_w2vrun_process`: the installed ``w2vrun`` console script in a subprocess.
- :func:`make_entry_point_dist`: a directory that, on ``sys.path`` or ``PYTHONPATH``,
  is an installed distribution declaring ``[w2v]`` entry points.
- :data:`TOY_RECIPE` and :func:`write` for recipe files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

import toy_plugin
from w2v import plugin_manager

CORE_TESTS_DIR = Path(__file__).resolve().parent


def load_with_toy(*extra: tuple[str, object]) -> plugin_manager.PluginSet:
    """The real plugins, the toy plugin and ``extra`` modules, freshly loaded."""
    return plugin_manager.load_plugins([("toy", toy_plugin), *extra])


@attrs.frozen
class CliResult:
    code: int
    out: str
    err: str


def w2vrun_script() -> Path:
    """The installed ``w2vrun`` console script beside the running interpreter."""
    return Path(sys.executable).parent / "w2vrun"


def run_w2vrun_process(*args: str, pythonpath: list[Path] | tuple = (), env: dict | None = None,
                       cwd: Path | None = None, timeout: float = 120) -> CliResult:
    """Run ``w2vrun ARGS`` in a subprocess (``pythonpath`` entries prepended)."""
    script = w2vrun_script()
    if not script.exists():
        pytest.skip(f"the w2vrun console script is not installed beside {sys.executable}")
    full_env = {k: v for k, v in os.environ.items() if k != "W2V_DISABLE_PLUGINS"}
    full_env["OMP_NUM_THREADS"] = "1"
    paths = [str(p) for p in pythonpath]
    if full_env.get("PYTHONPATH"):
        paths.append(full_env["PYTHONPATH"])
    if paths:
        full_env["PYTHONPATH"] = os.pathsep.join(paths)
    full_env.update(env or {})
    proc = subprocess.run([str(script), *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)
    return CliResult(code=proc.returncode, out=proc.stdout, err=proc.stderr)


def make_entry_point_dist(root: Path, dist: str, entry_points: dict[str, str],
                          modules: dict[str, str] | None = None, version: str = "0.1") -> Path:
    """Make ``root`` look like site-packages holding distribution ``dist``.

    Args:
        root: directory to put on ``sys.path`` / ``PYTHONPATH``.
        dist: distribution name (``<dist>-<version>.dist-info``).
        entry_points: ``{entry point name: module}`` in the ``w2v`` group.
        modules: ``{module file name: source}`` written into ``root`` (``my_plugin.py`` or
            ``pkg/__init__.py``).
    """
    root.mkdir(parents=True, exist_ok=True)
    for rel, source in (modules or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[w2v]\n{lines}")
    return root


# ------------------------------------------------------------------ recipes
TOY_RECIPE = """\
model:
  encoder: {name: toy_encoder, dim: 8, stride: 4}
  quantizer:
    name: toy_quantizer
    groups: 2
    num_vars: 4
    mode: hard
  aggregator: {name: toy_aggregator, layers: 2, dim: 16}
objective: {name: toy_objective, weight: 1.0}
stages:
  main: {name: toy_stage, message: hello}
"""


def write(path: Path, text: str) -> Path:
    """Write dedented ``text`` to ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path
