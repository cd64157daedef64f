"""The recipe-wide `fairseq_compat` key: inherited by every stage and every component config
that has the field; an explicit per-component (or per-stage) value wins."""

from __future__ import annotations

import pytest

from w2v.config.recipe import load_recipe, recipe_from_dict
from w2v.errors import ConfigError
from w2v.stages import plan_stages, resolved

MODEL = {"encoder": {"name": "wav2vec_conv"}, "aggregator": {"name": "gru"}}


def compat_flags(plan):
    return (plan.sections.model.aggregator.config.fairseq_compat,
            plan.sections.objective.config.fairseq_compat)


def test_top_level_key_reaches_every_component_and_explicit_fields_win():
    plans = plan_stages(recipe_from_dict({
        "fairseq_compat": True, "model": MODEL, "objective": {"name": "future_contrastive"},
        "stages": {"a": {"name": "train", "objective": {"fairseq_compat": False}},
                   "b": {"name": "train", "fairseq_compat": False},
                   "c": {"name": "train", "model": {"aggregator": {"fairseq_compat": False}}}}}))
    assert compat_flags(plans["a"]) == (True, False)     # the objective set its own
    assert compat_flags(plans["b"]) == (False, False)    # the stage set its own
    assert compat_flags(plans["c"]) == (False, True)     # the aggregator set its own
    assert resolved(None, plans)["stages"]["a"]["model"]["aggregator"]["fairseq_compat"] is True


def test_default_is_off_and_a_stage_can_turn_it_on():
    plans = plan_stages(recipe_from_dict({
        "model": MODEL, "objective": {"name": "future_contrastive"},
        "stages": {"a": {"name": "train"}, "b": {"name": "train", "fairseq_compat": True}}}))
    assert compat_flags(plans["a"]) == (False, False)
    assert compat_flags(plans["b"]) == (True, True)


def test_command_line_override_and_yaml_errors(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  encoder: {name: wav2vec_conv}\n  aggregator: {name: gru}\n"
                    "objective: {name: future_contrastive}\n")
    plans = plan_stages(load_recipe(path, ["fairseq_compat=true"]))
    assert compat_flags(plans["train"]) == (True, True)
    path.write_text("fairseq_compat: yes please\nmodel:\n  encoder: {name: wav2vec_conv}\n")
    with pytest.raises(ConfigError) as err:
        plan_stages(load_recipe(path))
    assert "fairseq_compat" in str(err.value) and f"{path}:1" in str(err.value)
    path.write_text("fairseq_compt: true\n")
    with pytest.raises(ConfigError, match="fairseq_compat"):          # did you mean
        load_recipe(path)
