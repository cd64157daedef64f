"""Shared test fixtures: plugin isolation, the toy plugin, and running ``w2vrun``.

- Every test starts and ends with the process-wide plugin set it found
  (autouse), so no test leaks registrations into another.
- ``toy_plugins``: the real plugins plus ``tests/core/toy_plugin.py``, installed
  as the process-wide set for one test.
- ``run_cli``: ``w2v.cli.main([...])`` in-process -> :class:`CliResult`.
- ``run_w2vrun``: the installed ``w2vrun`` console script in a subprocess, for
  tests that must prove a user error prints no traceback.
- ``entry_point_plugin``: makes a directory that, on ``sys.path`` or
  ``PYTHONPATH``, is an installed distribution declaring ``[w2v]`` entry points.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
import torch

torch.set_num_threads(1)

TESTS_DIR = Path(__file__).resolve().parent
CORE_TESTS_DIR = TESTS_DIR / "core"
if str(CORE_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(CORE_TESTS_DIR))

import toy_plugin  # noqa: E402  (needs CORE_TESTS_DIR on sys.path)

from w2v import plugin_manager  # noqa: E402


# ----------------------------------------------------------------- plugin state
@pytest.fixture(autouse=True)
def _isolate_plugins(monkeypatch):
    """Restore the process-wide plugin set after every test; no stray W2V_DISABLE_PLUGINS."""
    monkeypatch.delenv("W2V_DISABLE_PLUGINS", raising=False)
    saved = plugin_manager._CURRENT
    yield
    plugin_manager.reset(saved)


def load_with_toy(*extra: tuple[str, object]) -> plugin_manager.PluginSet:
    """The real plugins, the toy plugin and ``extra`` modules, freshly loaded."""
    return plugin_manager.load_plugins([("toy", toy_plugin), *extra])


@pytest.fixture
def toy_plugins() -> plugin_manager.PluginSet:
    """Real plugins plus the toy plugin, installed as the process-wide set for this test."""
    plugin_set = load_with_toy()
    plugin_manager.reset(plugin_set)
    return plugin_set


# ------------------------------------------------------------------ running w2vrun
@attrs.frozen
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli():
    """Run ``w2v.cli.main(args)`` in-process; returns a :class:`CliResult`.

    Non-user exceptions propagate (``main`` re-raises them), so a bug fails the test loudly.
    """
    from w2v import cli

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([str(a) for a in args])
        return CliResult(code=code, out=out.getvalue(), err=err.getvalue())

    return run


def w2vrun_script() -> Path:
    """The installed ``w2vrun`` console script beside the running interpreter."""
    return Path(sys.executable).parent / "w2vrun"


def run_w2vrun_process(*args: str, pythonpath: list[Path] | tuple = (), env: dict | None = None,
                       cwd: Path | None = None, timeout: float = 120) -> CliResult:
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


@pytest.fixture
def run_w2vrun():
    """Run the real ``w2vrun`` script: ``run_w2vrun(*args, pythonpath=[...], env={...})``."""
    return run_w2vrun_process


# --------------------------------------------------------- entry-point plugins
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


@pytest.fixture
def toy_entry_point(tmp_path) -> list[Path]:
    """PYTHONPATH entries under which ``w2vrun`` (a subprocess) loads the toy plugin
    through an entry point, exactly as a pip-installed plugin loads."""
    root = make_entry_point_dist(tmp_path / "site", "w2v-toy", {"toy": "toy_plugin"})
    return [root, CORE_TESTS_DIR]


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


@pytest.fixture
def toy_recipe(tmp_path) -> Path:
    """A valid toy recipe file (see :data:`TOY_RECIPE`)."""
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_RECIPE)
    return path


def write(path: Path, text: str) -> Path:
    """Write dedented ``text`` to ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path
