"""Shared test fixtures: plugin isolation, the toy plugin, and running ``w2vrun``.

- Every test starts and ends with the process-wide plugin set it found
  (autouse), so no test leaks registrations into another.
- ``toy_plugins``: the real plugins plus ``tests/core/toy_plugin.py``, installed
  as the process-wide set for one test.
- ``run_cli``: ``w2v.cli.main([...])`` in-process -> ``CliResult(code, out, err)``.
- ``run_w2vrun``: the installed ``w2vrun`` console script in a subprocess, for
  tests that must prove a user error prints no traceback.
- ``toy_entry_point``: PYTHONPATH entries under which a ``w2vrun`` subprocess
  loads the toy plugin through an entry point.

Helpers live in ``tests/core/core_testkit.py`` (import it by name; other test
folders have their own ``conftest.py``, so ``from conftest import`` is ambiguous).
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

CORE_TESTS_DIR = Path(__file__).resolve().parent / "core"
if str(CORE_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(CORE_TESTS_DIR))

from core_testkit import (TOY_RECIPE, CliResult, load_with_toy,  # noqa: E402
                          make_entry_point_dist, run_w2vrun_process)
from w2v import plugin_manager  # noqa: E402


@pytest.fixture(autouse=True)
def _isolate_plugins(monkeypatch):
    """Restore the process-wide plugin set after every test; no stray W2V_DISABLE_PLUGINS."""
    monkeypatch.delenv("W2V_DISABLE_PLUGINS", raising=False)
    saved = plugin_manager._CURRENT
    yield
    plugin_manager.reset(saved)


@pytest.fixture
def toy_plugins() -> plugin_manager.PluginSet:
    """Real plugins plus the toy plugin, installed as the process-wide set for this test."""
    plugin_set = load_with_toy()
    plugin_manager.reset(plugin_set)
    return plugin_set


@pytest.fixture
def run_cli():
    """Run ``w2v.cli.main(args)`` in-process; returns a ``CliResult``.

    Non-user exceptions propagate (``main`` re-raises them), so a bug fails the test loudly.
    """
    from w2v import cli

    def run(*args: str) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([str(a) for a in args])
        return CliResult(code=code, out=out.getvalue(), err=err.getvalue())

    return run


@pytest.fixture
def run_w2vrun():
    """Run the real ``w2vrun`` script: ``run_w2vrun(*args, pythonpath=[...], env={...})``."""
    return run_w2vrun_process


@pytest.fixture
def toy_entry_point(tmp_path) -> list[Path]:
    """PYTHONPATH entries under which ``w2vrun`` (a subprocess) loads the toy plugin
    through an entry point, exactly as a pip-installed plugin loads."""
    root = make_entry_point_dist(tmp_path / "site", "w2v-toy", {"toy": "toy_plugin"})
    return [root, CORE_TESTS_DIR]


@pytest.fixture
def toy_recipe(tmp_path) -> Path:
    """A valid toy recipe file (``core_testkit.TOY_RECIPE``)."""
    path = tmp_path / "toy.yaml"
    path.write_text(TOY_RECIPE)
    return path
