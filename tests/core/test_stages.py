"""Running a recipe's stages: DONE markers, ``--stages``, ``--from``, ``--force``, hand-over."""

from __future__ import annotations

import json

import pytest
import yaml

from core_testkit import write
from w2v.config.recipe import load_recipe
from w2v.errors import ConfigError

pytest.importorskip("w2v.train.config", reason="w2v.train.config (TrainerConfig) not written yet")

from w2v.stages import DONE, StageContext, plan_stages, run_stages, select  # noqa: E402

PIPELINE = """\
    model:
      encoder: {name: toy_encoder, dim: 8}
    stages:
      first: {name: toy_stage, message: one}
      second: {name: toy_stage, message: two}
      third: {name: toy_stage, message: three}
    """


@pytest.fixture
def pipeline(toy_plugins, tmp_path):
    raw = load_recipe(write(tmp_path / "p.yaml", PIPELINE))
    return raw, plan_stages(raw)


def run(pipeline, run_dir, **kw):
    raw, plans = pipeline
    lines: list[str] = []
    ran = run_stages(raw, plans, run_dir, echo=lines.append, **kw)
    return ran, lines


def test_all_stages_run_in_order_and_mark_done(pipeline, tmp_path):
    out = tmp_path / "run"
    ran, _ = run(pipeline, out)
    assert ran == ["first", "second", "third"]
    for sid, msg in [("first", "one"), ("second", "two"), ("third", "three")]:
        assert (out / sid / "toy.txt").read_text() == msg
        marker = json.loads((out / sid / DONE).read_text())
        assert marker["stage"] == sid and marker["name"] == "toy_stage"
    resolved = yaml.safe_load((out / "resolved.yaml").read_text())
    assert list(resolved["stages"]) == ["first", "second", "third"]


def test_completed_stages_are_skipped(pipeline, tmp_path):
    out = tmp_path / "run"
    run(pipeline, out)
    (out / "second" / "toy.txt").write_text("stale")
    ran, lines = run(pipeline, out)
    assert ran == []
    assert (out / "second" / "toy.txt").read_text() == "stale"
    assert any("already done" in line and "--force" in line for line in lines)


def test_force_reruns_everything(pipeline, tmp_path):
    out = tmp_path / "run"
    run(pipeline, out)
    (out / "second" / "toy.txt").write_text("stale")
    ran, _ = run(pipeline, out, force=True)
    assert ran == ["first", "second", "third"]
    assert (out / "second" / "toy.txt").read_text() == "two"


def test_from_reruns_that_stage_and_later_ones(pipeline, tmp_path):
    out = tmp_path / "run"
    run(pipeline, out)
    ran, _ = run(pipeline, out, from_="second")
    assert ran == ["second", "third"]


def test_stages_option_runs_only_those(pipeline, tmp_path):
    out = tmp_path / "run"
    ran, _ = run(pipeline, out, stages=["third", "first"])
    assert ran == ["first", "third"]  # recipe order, not command-line order
    assert not (out / "second").exists()


def test_unfinished_stage_runs_again(pipeline, tmp_path):
    out = tmp_path / "run"
    run(pipeline, out)
    (out / "second" / DONE).unlink()
    ran, _ = run(pipeline, out)
    assert ran == ["second"]


def test_unknown_stage_ids(pipeline):
    _, plans = pipeline
    with pytest.raises(ConfigError) as info:
        select(plans, ["secnd"], None)
    assert "Did you mean `second`?" in info.value.render()
    with pytest.raises(ConfigError):
        select(plans, None, "fourth")


def test_output_of_requires_a_completed_stage(pipeline, tmp_path):
    raw, plans = pipeline
    out = tmp_path / "run"
    plan = plans["third"]
    ctx = StageContext(stage_id="third", run_dir=out, stage_dir=out / "third",
                       sections=plan.sections, config=plan.spec.config, plans=plans)
    with pytest.raises(ConfigError) as info:
        ctx.output_of("first")
    assert "has not completed" in info.value.message and "--stages first" in info.value.hint
    with pytest.raises(ConfigError) as info:
        ctx.output_of("frist")
    assert "Did you mean `first`?" in info.value.render()
    run(pipeline, out, stages=["first"])
    assert ctx.output_of("first") == out / "first"


def test_failing_stage_is_not_marked_done(toy_plugins, tmp_path, monkeypatch):
    import toy_plugin

    raw = load_recipe(write(tmp_path / "p.yaml", PIPELINE))
    plans = plan_stages(raw)

    def boom(self, context):
        raise RuntimeError("stage crashed")

    monkeypatch.setattr(toy_plugin.ToyStage, "run", boom)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run_stages(raw, plans, out, echo=lambda s: None)
    assert not (out / "first" / DONE).exists()


def test_every_stage_is_validated_before_any_runs(toy_plugins, tmp_path):
    raw = load_recipe(write(tmp_path / "p.yaml", PIPELINE.replace("message: three",
                                                                  "mesage: three")))
    with pytest.raises(ConfigError) as info:
        plan_stages(raw)
    assert info.value.key == "stages.third.mesage"
