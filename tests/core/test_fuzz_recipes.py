"""Property test: whatever a user does to a valid recipe, ``w2vrun`` answers with a clean
:class:`~w2v.errors.UserError` (or succeeds), never with another exception.

Each example mutates a valid toy recipe (delete, rename, retype values with
random scalars, lists, mappings, strings and huge numbers, swap component
names, add and nest junk keys, add bogus overrides, corrupt the YAML text),
then loads, structures and dry-runs it (components are built on the meta
device, so even the largest accepted sizes cost nothing).
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from w2v.config.recipe import load_recipe
from w2v.errors import UserError

pytest.importorskip("w2v.train.config", reason="w2v.train.config (TrainerConfig) not written yet")

from w2v.stages import dry_run, plan_stages  # noqa: E402

VALID = {
    "data": {"sample_rate": 16000, "max_sample_size": 32000, "max_tokens": 64000},
    "model": {
        "encoder": {"name": "toy_encoder", "dim": 8, "stride": 4},
        "quantizer": {"name": "toy_quantizer", "groups": 2, "num_vars": 4,
                      "temp": [2.0, 0.5, 0.999], "mode": "hard",
                      "inner": {"name": "toy_aggregator", "layers": 1,
                                "block": {"name": "toy_scale", "factor": 1.5}}},
        "aggregator": {"name": "toy_aggregator", "layers": 2, "dim": 16, "causal": True},
        "quantize": "targets",
    },
    "objective": {"name": "toy_objective", "weight": 1.0, "needs_causal": True},
    "decoder": {"name": "toy_greedy", "blank": 0},
    "trainer": {"lr": 0.001, "max_updates": 10},
    "stages": {
        "first": {"name": "toy_stage", "message": "hi"},
        "second": {"name": "toy_stage", "model": {"aggregator": {"layers": 3}},
                   "trainer": {"lr": 0.0001}},
    },
}

TOY_NAMES = ["toy_encoder", "toy_quantizer", "toy_aggregator", "toy_scale", "toy_objective",
             "toy_greedy", "toy_stage"]
KEYS = sorted({"name", "dim", "stride", "groups", "num_vars", "temp", "mode", "inner", "layers",
               "block", "factor", "causal", "weight", "needs_causal", "blank", "lr", "message",
               "max_updates", "sample_rate", "encoder", "quantizer", "aggregator", "objective",
               "model", "data", "trainer", "stages", "decoder", "base", "masker", "quantize"})

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-10, max_value=10),
    st.integers(min_value=-(10 ** 400), max_value=10 ** 400),
    st.sampled_from([2 ** 31, 2 ** 63, 10 ** 30, -(2 ** 63), 10 ** 400, -(10 ** 400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["3e-5", "1e999", "nan", "-inf", "", "yes", "no", "null", "${HOME}",
                     "${W2V_FUZZ_UNSET}", "${W2V_FUZZ_UNSET:-2}", "~", "[1, 2", "{a: 1}"]),
    st.sampled_from(TOY_NAMES + ["toy_quantiser", "gumbel", "kmeans", "nope"]),
    st.text(max_size=12),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner,
                                            max_size=4)),
    max_leaves=8,
)
key_names = st.sampled_from(KEYS) | st.text(min_size=1, max_size=10)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path (and list index path) in ``node``."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out.extend(paths(v, prefix + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(prefix + (i,))
            out.extend(paths(v, prefix + (i,)))
    return out


def parent_of(root: Any, path: tuple) -> Any:
    node = root
    for p in path[:-1]:
        node = node[p]
    return node


@st.composite
def mutated(draw) -> tuple[dict, list[str], tuple[int, str] | None]:
    """A mutated recipe, a few overrides, and maybe a text corruption (position, insert)."""
    recipe = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        all_paths = paths(recipe)
        op = draw(st.sampled_from(["delete", "rename", "replace", "rename_component", "add",
                                   "nest", "add_top"]))
        if op == "add_top" or not all_paths:
            recipe[draw(key_names)] = draw(junk)
            continue
        path = draw(st.sampled_from(all_paths))
        parent = parent_of(recipe, path)
        leaf = path[-1]
        if op == "delete":
            del parent[leaf]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(key_names)] = parent.pop(leaf)
        elif op == "replace":
            parent[leaf] = draw(junk)
        elif op == "rename_component":
            node = parent[leaf]
            if isinstance(node, dict) and "name" in node:
                node["name"] = draw(st.sampled_from(TOY_NAMES) | st.text(max_size=8))
            else:
                parent[leaf] = draw(st.sampled_from(TOY_NAMES))
        elif op == "add":
            node = parent[leaf]
            if isinstance(node, dict):
                node[draw(key_names)] = draw(junk)
        elif op == "nest":
            parent[leaf] = {"name": draw(st.sampled_from(TOY_NAMES)), draw(key_names): draw(junk)}
    overrides = draw(st.lists(
        st.tuples(st.sampled_from([".".join(map(str, p)) for p in paths(VALID)] + ["", "model.",
                                                                                   "x y", "a..b"]),
                  st.sampled_from(["=", "", "=="]),
                  st.sampled_from(["1", "null", "[1, 2]", "{name: toy_scale}", "3e-5", "abc",
                                   "1" + "0" * 50, "${W2V_FUZZ_UNSET}", "[", ""]))
        .map(lambda t: "".join(t)), max_size=2))
    corrupt = None
    if draw(st.integers(0, 9)) == 0:
        inserts = ["", ":", "{", "  ", "- ", "\t", "&a ", "*b", "!!python/name:os.system "]
        corrupt = (draw(st.integers(0, 2000)), draw(st.sampled_from(inserts)))
    return recipe, overrides, corrupt


def attempt(recipe: dict, overrides: list[str], corrupt, workdir: Path) -> str:
    text = yaml.safe_dump(recipe, sort_keys=False)
    if corrupt is not None:
        pos, insert = corrupt
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos:]
    path = workdir / "fuzz.yaml"
    path.write_text(text)
    try:
        raw = load_recipe(path, overrides)
        plans = plan_stages(raw)
        dry_run(raw, plans, echo=lambda line: None)
    except UserError as exc:
        message = exc.render()
        assert message and "Traceback" not in message
        return "user error"
    return "ok"


def test_the_valid_recipe_is_valid(toy_plugins, tmp_path):
    assert attempt(copy.deepcopy(VALID), [], None, tmp_path) == "ok"


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_recipes_fail_only_with_user_errors(toy_plugins, monkeypatch, case):
    monkeypatch.delenv("W2V_FUZZ_UNSET", raising=False)
    recipe, overrides, corrupt = case
    with tempfile.TemporaryDirectory() as d:
        attempt(recipe, overrides, corrupt, Path(d))


# ------------------------------------------------------ a deterministic sweep of edge values
EDGE_VALUES = [
    pytest.param(None, id="null"),
    pytest.param(True, id="true"),
    pytest.param(-1, id="negative"),
    pytest.param(2 ** 63, id="int64_overflow"),
    pytest.param(10 ** 400, id="huge_int"),
    pytest.param(float("inf"), id="inf"),
    pytest.param(float("nan"), id="nan"),
    pytest.param("x", id="text"),
    pytest.param([1, "a"], id="list"),
    pytest.param({"name": "toy_scale"}, id="component_mapping"),
]


def leaf_paths(node: Any) -> list[tuple]:
    return [p for p in paths(node) if not isinstance(parent_of(node, p)[p[-1]], (dict, list))]


@pytest.mark.parametrize("value", EDGE_VALUES)
def test_edge_value_at_every_leaf(toy_plugins, tmp_path, value):
    """Put ``value`` at every scalar of the valid recipe in turn: only user errors or success."""
    crashes = []
    for path in leaf_paths(VALID):
        recipe = copy.deepcopy(VALID)
        parent_of(recipe, path)[path[-1]] = copy.deepcopy(value)
        try:
            attempt(recipe, [], None, tmp_path)
        except Exception as exc:  # noqa: BLE001  (collect every crash, report them together)
            crashes.append(f"{'.'.join(map(str, path))}: {type(exc).__name__}: {exc}")
    assert not crashes, "\n".join(crashes)
