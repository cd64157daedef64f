"""Recipes: ``base:`` inheritance, dotted overrides, env interpolation, stages, YAML errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from core_testkit import TOY_RECIPE, write
from w2v.config.recipe import load_recipe, recipe_from_dict, stage_sections
from w2v.errors import ConfigError


def load_error(path: Path, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_recipe(path, overrides)
    return info.value


def plan(path_or_raw, overrides=()):
    """Structure every stage (needs the data and trainer sections' configs)."""
    pytest.importorskip("w2v.train.config",
                        reason="w2v.train.config (TrainerConfig) not written yet")
    from w2v.stages import plan_stages

    raw = path_or_raw if not isinstance(path_or_raw, (str, Path)) else \
        load_recipe(path_or_raw, overrides)
    return plan_stages(raw)


def plan_error(path: Path, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        plan(path, overrides)
    return info.value


# ------------------------------------------------------------------ base inheritance
def test_base_path_is_relative_to_the_file_naming_it(tmp_path):
    write(tmp_path / "bases" / "parent.yaml", """\
        model:
          encoder: {name: toy_encoder, dim: 8}
          aggregator: {name: toy_aggregator, layers: 2}
        trainer: {lr: 0.1}
        """)
    child = write(tmp_path / "recipes" / "child.yaml", """\
        base: ../bases/parent.yaml
        model:
          aggregator: {layers: 5}
        """)
    raw = load_recipe(child)
    assert raw.data["model"] == {"encoder": {"name": "toy_encoder", "dim": 8},
                                 "aggregator": {"name": "toy_aggregator", "layers": 5}}
    assert raw.data["trainer"] == {"lr": 0.1}
    assert "base" not in raw.data
    # every key remembers the file and line it came from
    parent = tmp_path / "bases" / "parent.yaml"
    assert raw.srcmap.where(("model", "encoder", "dim")) == f"{parent}:2"
    assert raw.srcmap.where(("model", "aggregator", "layers")) == f"{child}:3"
    assert [p.name for p in raw.files] == ["child.yaml", "parent.yaml"]


def test_base_chain_of_three(tmp_path):
    write(tmp_path / "a.yaml", "trainer: {lr: 1.0, max_updates: 10, seed: 1}\n")
    write(tmp_path / "sub" / "b.yaml", "base: ../a.yaml\ntrainer: {max_updates: 20}\n")
    c = write(tmp_path / "sub" / "deeper" / "c.yaml", "base: ../b.yaml\ntrainer: {seed: 3}\n")
    assert load_recipe(c).data["trainer"] == {"lr": 1.0, "max_updates": 20, "seed": 3}


def test_list_of_bases_merges_in_order_then_the_file_itself(tmp_path):
    write(tmp_path / "one.yaml", "trainer: {lr: 1.0, seed: 1}\ndata: {sample_rate: 8000}\n")
    write(tmp_path / "two.yaml", "trainer: {lr: 2.0}\n")
    main = write(tmp_path / "main.yaml", "base: [one.yaml, two.yaml]\ntrainer: {seed: 5}\n")
    data = load_recipe(main).data
    assert data["trainer"] == {"lr": 2.0, "seed": 5}
    assert data["data"] == {"sample_rate": 8000}


def test_base_cycle_is_an_error(tmp_path):
    a = write(tmp_path / "a.yaml", "base: b.yaml\ntrainer: {lr: 1}\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    err = load_error(a)
    assert "cycle" in err.message and "a.yaml" in err.message and "b.yaml" in err.message
    assert err.key == "base"


def test_recipe_naming_itself_as_base_is_a_cycle(tmp_path):
    a = write(tmp_path / "a.yaml", "base: a.yaml\n")
    assert "cycle" in load_error(a).message


def test_missing_base_file(tmp_path):
    a = write(tmp_path / "a.yaml", "trainer: {lr: 1}\nbase: nothere.yaml\n")
    err = load_error(a)
    assert "nothere.yaml" in err.message and err.where == f"{a.resolve()}:2" and err.key == "base"


def test_base_must_be_a_path_or_list_of_paths(tmp_path):
    a = write(tmp_path / "a.yaml", "base: {x: 1}\n")
    assert load_error(a).key == "base"


def test_section_replaced_when_base_changes_its_name(tmp_path):
    write(tmp_path / "parent.yaml", """\
        model:
          quantizer: {name: gumbel, groups: 2, temp: [2.0, 0.5, 0.999995]}
        """)
    child = write(tmp_path / "child.yaml", """\
        base: parent.yaml
        model:
          quantizer: {name: kmeans, num_vars: 320}
        """)
    raw = load_recipe(child)
    assert raw.data["model"]["quantizer"] == {"name": "kmeans", "num_vars": 320}
    # nothing of the parent's section is remembered as a source any more
    assert raw.srcmap.where(("model", "quantizer", "temp")) == f"{child.resolve()}:3"


def test_section_merged_when_name_is_the_same(tmp_path):
    write(tmp_path / "parent.yaml", """\
        model:
          quantizer: {name: toy_quantizer, groups: 4, mode: soft}
        """)
    child = write(tmp_path / "child.yaml", """\
        base: parent.yaml
        model:
          quantizer: {name: toy_quantizer, groups: 8}
        """)
    assert load_recipe(child).data["model"]["quantizer"] == {
        "name": "toy_quantizer", "groups": 8, "mode": "soft"}


def test_section_merged_when_child_omits_name(tmp_path):
    write(tmp_path / "parent.yaml", "model:\n  quantizer: {name: toy_quantizer, groups: 4}\n")
    child = write(tmp_path / "child.yaml", "base: parent.yaml\nmodel:\n  quantizer: {mode: soft}\n")
    assert load_recipe(child).data["model"]["quantizer"] == {
        "name": "toy_quantizer", "groups": 4, "mode": "soft"}


def test_null_deletes_an_inherited_section_and_key(tmp_path):
    write(tmp_path / "parent.yaml", """\
        model:
          quantizer: {name: toy_quantizer, groups: 4, mode: soft}
          aggregator: {name: toy_aggregator}
        """)
    child = write(tmp_path / "child.yaml", """\
        base: parent.yaml
        model:
          aggregator: null
          quantizer: {mode: null}
        """)
    model = load_recipe(child).data["model"]
    assert "aggregator" not in model
    assert model["quantizer"] == {"name": "toy_quantizer", "groups": 4}


def test_stage_null_survives_a_base_merge_and_still_switches_the_component_off(tmp_path):
    write(tmp_path / "parent.yaml", """\
        model:
          quantizer: {name: toy_quantizer}
        stages:
          tune: {name: toy_stage, model: {quantizer: null}}
        """)
    child = write(tmp_path / "child.yaml", """\
        base: parent.yaml
        stages:
          tune: {model: {quantizer: null}, trainer: {lr: 0.1}}
        """)
    sections, _, _ = stage_sections(load_recipe(child))["tune"]
    assert "quantizer" not in sections["model"]
    assert sections["trainer"] == {"lr": 0.1}


def test_error_in_a_base_file_points_into_the_base(toy_plugins, tmp_path):
    parent = write(tmp_path / "parent.yaml", TOY_RECIPE.replace("layers: 2", "layers: 2.5"))
    child = write(tmp_path / "child.yaml", "base: parent.yaml\ntrainer: {}\n")
    err = plan_error(child)
    assert err.key == "model.aggregator.layers"
    assert err.where == f"{parent.resolve()}:8"


# ------------------------------------------------------------------ overrides
def test_overrides_parse_values_as_yaml():
    raw = recipe_from_dict({"model": {"quantizer": {"name": "toy_quantizer", "groups": 2}}}, [
        "model.quantizer.num_vars=64",
        "trainer.lr=3e-5",
        "model.quantizer.temp=[2, 0.5, 0.9]",
        "data.train=/tmp/x.tsv",
        "model.quantizer.groups=null",
        "model.quantizer.inner.block.factor=2.5",
        "model.quantizer.label=",
    ])
    q = raw.data["model"]["quantizer"]
    assert q["num_vars"] == 64 and type(q["num_vars"]) is int
    lr = raw.data["trainer"]["lr"]
    assert lr == pytest.approx(3e-5) and type(lr) is float
    assert q["temp"] == [2, 0.5, 0.9]
    assert raw.data["data"]["train"] == "/tmp/x.tsv"
    assert "groups" not in q
    assert q["inner"] == {"block": {"factor": 2.5}}  # new nested keys are created
    assert q["label"] == ""


def test_override_source_is_the_command_line(toy_plugins, toy_recipe):
    err = plan_error(toy_recipe, ["model.aggregator.layers=1000000"])
    assert err.key == "model.aggregator.layers"
    assert err.where == "command line (`model.aggregator.layers=1000000`)"


def test_override_with_a_mapping_replaces_a_section_when_the_name_changes():
    raw = recipe_from_dict({"model": {"quantizer": {"name": "gumbel", "temp": [2, 0.5, 0.9]}}},
                           ["model.quantizer={name: kmeans, num_vars: 8}"])
    assert raw.data["model"]["quantizer"] == {"name": "kmeans", "num_vars": 8}


def test_override_of_name_alone_replaces_the_section():
    raw = recipe_from_dict({"model": {"quantizer": {"name": "gumbel", "temp": [2, 0.5, 0.9]}}},
                           ["model.quantizer.name=kmeans", "model.quantizer.num_vars=8"])
    assert raw.data["model"]["quantizer"] == {"name": "kmeans", "num_vars": 8}


def test_a_stage_switched_off_keeps_its_place_for_whoever_switches_it_on(tmp_path):
    """`stages.X: null` in a base recipe holds X's place: a child recipe or an override that
    sets X again runs it there (before the stages that read it), not after every stage."""
    write(tmp_path / "parent.yaml", """\
        stages:
          first: {name: toy_stage}
          optional: null
          last: {name: toy_stage}
        """)
    child = write(tmp_path / "child.yaml", """\
        base: parent.yaml
        stages:
          optional: {name: toy_stage}
        """)
    assert list(stage_sections(load_recipe(tmp_path / "parent.yaml"))) == ["first", "last"]
    assert list(stage_sections(load_recipe(child))) == ["first", "optional", "last"]
    raw = load_recipe(tmp_path / "parent.yaml", ["stages.optional={name: toy_stage}"])
    assert list(stage_sections(raw)) == ["first", "optional", "last"]
    raw = load_recipe(child, ["stages.optional=null", "stages.first=null"])
    assert list(stage_sections(raw)) == ["last"]


def test_overrides_into_stage_sections():
    raw = recipe_from_dict({"stages": {"ft": {"name": "toy_stage"}}},
                           ["stages.ft.trainer.lr=3.0e-5"])
    assert raw.data["stages"]["ft"]["trainer"] == {"lr": 3e-5}


@pytest.mark.parametrize("item, words", [
    ("model.quantizer.num_vars", ["malformed override", "key.path=value"]),
    ("model..x=1", ["malformed override key"]),
    ("=3", ["malformed override key"]),
    ("model.quan tizer=1", ["malformed override key"]),
    ("modle.encoder.dim=3", ["unknown top-level section", "Did you mean `model`?"]),
    ("base=other.yaml", ["unknown top-level section"]),
    ("model.quantizer.groups.inner=1", ["cannot set", "`model.quantizer.groups` is int"]),
    ("model.quantizer.temp.x=1", ["cannot set", "is list"]),
    ("trainer.lr=[1, 2", ["YAML syntax error"]),
])
def test_malformed_overrides(item, words):
    with pytest.raises(ConfigError) as info:
        recipe_from_dict({"model": {"quantizer": {"name": "toy_quantizer", "groups": 2,
                                                  "temp": [1, 2, 3]}}}, [item])
    text = info.value.render()
    assert info.value.where.startswith("command line")
    for w in words:
        assert w in text


def test_overrides_apply_to_a_file_recipe_after_its_bases(tmp_path):
    write(tmp_path / "parent.yaml", "trainer: {lr: 1.0}\n")
    child = write(tmp_path / "child.yaml", "base: parent.yaml\ntrainer: {lr: 2.0}\n")
    assert load_recipe(child, ["trainer.lr=3.0"]).data["trainer"]["lr"] == 3.0


# ------------------------------------------------------------------ environment
def test_env_interpolation_with_default(tmp_path, monkeypatch):
    monkeypatch.delenv("W2V_TEST_UNSET", raising=False)
    monkeypatch.setenv("W2V_TEST_ROOT", "/data/ls")
    path = write(tmp_path / "r.yaml", """\
        data:
          train: ${W2V_TEST_ROOT}/train.tsv
          valid: ${W2V_TEST_UNSET:-/fallback}/valid.tsv
          test: "${W2V_TEST_UNSET:-}"
        """)
    data = load_recipe(path).data["data"]
    assert data == {"train": "/data/ls/train.tsv", "valid": "/fallback/valid.tsv", "test": ""}


def test_env_set_variable_wins_over_default(tmp_path, monkeypatch):
    monkeypatch.setenv("W2V_TEST_ROOT", "/set")
    path = write(tmp_path / "r.yaml", "data: {train: '${W2V_TEST_ROOT:-/default}'}\n")
    assert load_recipe(path).data["data"]["train"] == "/set"


def test_env_interpolation_in_overrides_and_lists(tmp_path, monkeypatch):
    monkeypatch.setenv("W2V_TEST_ROOT", "/x")
    raw = recipe_from_dict({"data": {}}, ["data.train=${W2V_TEST_ROOT}/a.tsv",
                                          "model.encoder.paths=['${W2V_TEST_ROOT}', b]"])
    assert raw.data["data"]["train"] == "/x/a.tsv"
    assert raw.data["model"]["encoder"]["paths"] == ["/x", "b"]


def test_missing_env_variable_is_an_error_with_location(tmp_path, monkeypatch):
    monkeypatch.delenv("W2V_TEST_UNSET", raising=False)
    path = write(tmp_path / "r.yaml", "trainer: {lr: 1}\ndata:\n  train: ${W2V_TEST_UNSET}/t.tsv\n")
    err = load_error(path)
    assert "W2V_TEST_UNSET" in err.message and "not set" in err.message
    assert err.where == f"{path}:3" and err.key == "data.train"
    assert "${W2V_TEST_UNSET:-" in err.hint


# ------------------------------------------------------------------ YAML problems
def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path / "r.yaml", """\
        trainer:
          lr: 1
        model:
          encoder: {name: toy_encoder, dim: 8
        data: {}
        """)
    err = load_error(path)
    assert "YAML syntax error" in err.message
    assert err.where in (f"{path}:4", f"{path}:5")


def test_bad_indentation_is_a_syntax_error(tmp_path):
    path = write(tmp_path / "r.yaml", "model:\n  encoder: {name: x}\n   aggregator: {name: y}\n")
    err = load_error(path)
    assert "YAML syntax error" in err.message and err.where.startswith(f"{path}:")


def test_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path / "r.yaml", """\
        model:
          encoder: {name: toy_encoder}
          aggregator: {name: toy_aggregator}
          encoder: {name: toy_encoder, dim: 4}
        """)
    err = load_error(path)
    assert "duplicate key `encoder`" in err.message
    assert err.where == f"{path}:4" and err.key == "model.encoder"


def test_duplicate_key_in_a_flow_mapping(tmp_path):
    path = write(tmp_path / "r.yaml", "trainer: {lr: 1, lr: 2}\n")
    assert "duplicate key" in load_error(path).message


def test_recipe_must_be_a_mapping(tmp_path):
    path = write(tmp_path / "r.yaml", "- a\n- b\n")
    assert "mapping" in load_error(path).message


def test_empty_recipe_is_an_empty_mapping(tmp_path):
    path = write(tmp_path / "r.yaml", "# nothing yet\n")
    assert load_recipe(path).data == {}


def test_missing_recipe_file(tmp_path):
    err = load_error(tmp_path / "nope.yaml")
    assert "does not exist" in err.message and "nope.yaml" in err.message


def test_unknown_top_level_section(tmp_path):
    path = write(tmp_path / "r.yaml", "trainer: {lr: 1}\nmodle:\n  encoder: {name: x}\n")
    err = load_error(path)
    assert "unknown top-level section" in err.message
    assert err.where == f"{path}:2" and err.key == "modle"
    assert "Did you mean `model`?" in err.render()


# ------------------------------------------------------------------ stages
STAGED = """\
    model:
      encoder: {name: toy_encoder, dim: 8}
      aggregator: {name: toy_aggregator, layers: 2}
    objective: {name: toy_objective, weight: 1.0}
    trainer: {lr: 0.001, max_updates: 100}
    stages:
      pretrain: {name: toy_stage}
      finetune:
        name: toy_stage
        message: tuned
        model:
          aggregator: {layers: 3}
          quantizer: {name: toy_quantizer}
        objective: {name: toy_objective, needs_causal: false, weight: 2.0}
        trainer: {max_updates: 7}
      nodata:
        name: toy_stage
        objective: null
    """


def test_stage_sections_inherit_and_override_top_level(tmp_path):
    raw = load_recipe(write(tmp_path / "r.yaml", STAGED))
    stages = stage_sections(raw)
    assert list(stages) == ["pretrain", "finetune", "nodata"]
    pre, pre_own, _ = stages["pretrain"]
    assert pre["model"]["aggregator"] == {"name": "toy_aggregator", "layers": 2}
    assert pre_own == {"name": "toy_stage"}
    ft, ft_own, ft_map = stages["finetune"]
    assert ft["model"]["aggregator"] == {"name": "toy_aggregator", "layers": 3}
    assert ft["model"]["encoder"] == {"name": "toy_encoder", "dim": 8}
    assert ft["model"]["quantizer"] == {"name": "toy_quantizer"}
    assert ft["objective"] == {"name": "toy_objective", "needs_causal": False, "weight": 2.0}
    assert ft["trainer"] == {"lr": 0.001, "max_updates": 7}
    assert ft_own == {"name": "toy_stage", "message": "tuned"}
    # a stage override is located at the stage's own line
    assert ft_map.where(("model", "aggregator", "layers")) == f"{raw.path}:12"
    assert ft_map.where(("model", "encoder", "dim")) == f"{raw.path}:2"
    nodata, _, _ = stages["nodata"]
    assert "objective" not in nodata
    # top-level sections are untouched by the stages' overrides
    assert raw.data["model"]["aggregator"] == {"name": "toy_aggregator", "layers": 2}


def test_stage_section_replaced_when_its_name_changes(tmp_path):
    raw = recipe_from_dict({
        "model": {"quantizer": {"name": "gumbel", "temp": [2, 0.5, 0.9]}},
        "stages": {"s": {"name": "toy_stage", "model": {"quantizer": {"name": "kmeans"}}}}})
    sections, _, _ = stage_sections(raw)["s"]
    assert sections["model"]["quantizer"] == {"name": "kmeans"}


def test_default_stage_when_recipe_has_none():
    stages = stage_sections(recipe_from_dict({"trainer": {"lr": 1}}))
    assert list(stages) == ["train"] and stages["train"][1] == {"name": "train"}


def test_stage_planning_structures_each_stage(toy_plugins, tmp_path):
    plans = plan(write(tmp_path / "r.yaml", STAGED))
    ft = plans["finetune"]
    assert ft.spec.name == "toy_stage" and ft.spec.config.message == "tuned"
    assert ft.sections.model.aggregator.config.layers == 3
    assert ft.sections.objective.config.weight == 2.0
    assert plans["pretrain"].sections.model.quantizer is None
    assert plans["nodata"].sections.objective is None


def test_error_in_a_stage_override_is_located_in_the_stage(toy_plugins, tmp_path):
    path = write(tmp_path / "r.yaml", STAGED.replace("aggregator: {layers: 3}",
                                                     "aggregator: {layres: 3}"))
    err = plan_error(path)
    assert err.where == f"{path}:12"
    assert err.key.endswith("model.aggregator.layres")
    assert "Did you mean `layers`?" in err.render()


def test_unknown_key_of_a_stage_itself(toy_plugins, tmp_path):
    path = write(tmp_path / "r.yaml", STAGED.replace("message: tuned", "mesage: tuned"))
    err = plan_error(path)
    assert err.key == "stages.finetune.mesage" and err.where == f"{path}:10"
    assert "Did you mean `message`?" in err.render()


def test_unknown_stage_name(toy_plugins, tmp_path):
    path = write(tmp_path / "r.yaml", STAGED.replace("pretrain: {name: toy_stage}",
                                                     "pretrain: {name: toy_stag}"))
    err = plan_error(path)
    assert err.key == "stages.pretrain.name" and "Did you mean `toy_stage`?" in err.render()


def test_stage_must_be_a_mapping(tmp_path):
    raw = recipe_from_dict({"stages": {"s": 3}})
    with pytest.raises(ConfigError) as info:
        stage_sections(raw)
    assert info.value.key == "stages.s"


def test_stages_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError) as info:
        stage_sections(recipe_from_dict({"stages": ["a", "b"]}))
    assert info.value.key == "stages"
