"""YAML aliases cannot blow up a recipe: expansion is bounded and stops with exit 2.

A "billion laughs" recipe nests aliases inside anchors, so each line multiplies
the content by nine; w2v's own walker used to copy every repetition (a 329-byte
recipe took 1.3 GB).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from w2v.config.source import load_yaml, parse_yaml
from w2v.errors import ConfigError

LEVELS = "abcdefghi"


def billion_laughs(levels: int) -> str:
    """``levels`` lines, each a list of nine aliases of the line above (9**levels strings)."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip(LEVELS, LEVELS[1:levels]):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _limit_memory():  # the child may not take the machine down on code without the bound
    resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))


_PARSE_AND_TIME = """
import sys, time
from w2v.config.source import load_yaml
from w2v.errors import ConfigError
start = time.perf_counter()
try:
    load_yaml(sys.argv[1])
    print("parsed", time.perf_counter() - start)
except ConfigError as exc:
    print("refused", time.perf_counter() - start)
    print(exc)
"""


def test_billion_laughs_stops_within_two_seconds(tmp_path):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(billion_laughs(9))
    assert recipe.stat().st_size < 400
    # in a child with a memory cap: without the bound, the expansion would take the machine
    result = subprocess.run([sys.executable, "-c", _PARSE_AND_TIME, str(recipe)],
                            capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory)
    status, *message = result.stdout.splitlines() or ["crashed: " + result.stderr[-300:]]
    assert status.startswith("refused"), status
    assert float(status.split()[1]) < 2.0
    text = "\n".join(message)
    assert f"{recipe}:" in text and "expands to more than" in text and "aliases" in text


def test_a_moderate_bomb_is_refused_too():
    # 9**6 = 531,441 strings: today's walker expands it (about a second, a few hundred MB)
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_yaml(billion_laughs(6), "bomb.yaml")


def test_ordinary_aliases_and_merge_keys_still_work():
    text = ("common: &common {dropout: 0.1, layers: 2}\n"
            "model:\n  aggregator: {<<: *common, layers: 4}\n"
            "list: &l [1, 2, 3]\nagain: *l\n")
    data, srcmap = parse_yaml(text, "r.yaml")
    assert data["model"]["aggregator"] == {"dropout": 0.1, "layers": 4}
    assert data["again"] == [1, 2, 3]
    assert srcmap.where(("model", "aggregator")) == "r.yaml:3"


def test_shipped_recipes_stay_far_below_the_bound():
    recipes = sorted((Path(__file__).parents[2] / "recipes").rglob("*.yaml"))
    assert recipes
    for path in recipes:
        _, srcmap = load_yaml(path)
        assert len(srcmap.entries) < 5_000, path  # the bound is 100,000


def test_w2vrun_exits_2_on_an_alias_bomb(tmp_path):
    from core_testkit import w2vrun_script

    script = w2vrun_script()
    if not script.exists():
        pytest.skip("the w2vrun console script is not installed")
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(billion_laughs(9))
    try:
        result = subprocess.run([str(script), str(recipe), "--dry-run"], capture_output=True,
                                text=True, timeout=60, preexec_fn=_limit_memory,
                                env={"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent)})
    except subprocess.TimeoutExpired:
        pytest.fail("w2vrun did not finish within 60 s on a 330-byte recipe")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("w2vrun: error: ")
    assert f"{recipe}:" in result.stderr and "expands to more than 100,000 values" in result.stderr
