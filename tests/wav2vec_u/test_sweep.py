"""The wav2vec-U hyperparameter sweep: grid expansion, sub-runs of ``train_gan``, selection
across them by the unsupervised metric, resumption and grid errors.

The tiny pipeline is test_pipeline.py's: synthetic feature shards (each phone a point in
8-d with noise) and unpaired sentences over a lexicon of the same phones.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
import torch

from w2v.plugins.wav2vec_u.sweep import expand
from w2vu_corpus import gan_recipe, write_corpus

ROOT = Path(__file__).resolve().parents[2]
GRID = "{seed: [1, 2], code_penalty: [3.0]}"
NAMES = ["seed=1__code_penalty=3", "seed=2__code_penalty=3"]


def test_the_grid_expands_to_its_cross_product_in_key_order():
    confs = expand({"code_penalty": [2.0, 4.0], "gradient_penalty": [1.5, 2.0], "seed": [0, 1]})
    assert [c.name for c in confs] == [
        "code_penalty=2__gradient_penalty=1.5__seed=0", "code_penalty=2__gradient_penalty=1.5__seed=1",
        "code_penalty=2__gradient_penalty=2__seed=0", "code_penalty=2__gradient_penalty=2__seed=1",
        "code_penalty=4__gradient_penalty=1.5__seed=0", "code_penalty=4__gradient_penalty=1.5__seed=1",
        "code_penalty=4__gradient_penalty=2__seed=0", "code_penalty=4__gradient_penalty=2__seed=1"]
    assert confs[5].values == {"code_penalty": 4.0, "gradient_penalty": 1.5, "seed": 1}
    assert expand(None) == [] and expand({}) == []


def test_the_paper_recipes_carry_fairseqs_grid():
    """README of fairseq's examples/wav2vec/unsupervised: code_penalty 2,4 x gradient_penalty
    1.5,2.0 x smoothness_weight 0.5,0.75,1.0 x common.seed range(0,5)."""
    from w2v.config.recipe import load_recipe
    from w2v.stages import check_stages, plan_stages

    for recipe in ("wav2vec_u.yaml", "wav2vec_u2.yaml"):
        plans = plan_stages(load_recipe(ROOT / "recipes" / recipe))
        gan = plans["gan"].spec.config
        assert gan.sweep == {"code_penalty": [2.0, 4.0], "gradient_penalty": [1.5, 2.0],
                             "smoothness_weight": [0.5, 0.75, 1.0], "seed": [0, 1, 2, 3, 4]}
        confs = expand(gan.sweep)
        assert len(confs) == 60 <= gan.max_configs and len({c.name for c in confs}) == 60
        check_stages(plans, ["gan"], dry=True)          # every key is an objective setting


def test_a_configuration_sets_the_objective_and_both_seeds(tmp_path):
    from w2v.build import structure_sections
    from w2v.config.source import SourceMap
    from w2v.plugins.wav2vec_u.sweep import Configuration

    sections = structure_sections({"data": {"name": "features", "path": str(tmp_path)},
                                   "objective": {"name": "wav2vec_u", "code_penalty": 4.0}},
                                  SourceMap())
    out = Configuration({"code_penalty": 2.0, "smoothness_weight": 0.75, "seed": 3}) \
        .apply(sections)
    assert (out.objective.config.code_penalty, out.objective.config.smoothness_weight) == \
        (2.0, 0.75)
    assert out.objective.config.gradient_penalty == sections.objective.config.gradient_penalty
    assert out.trainer.seed == 3 and out.data.seed == 3
    assert sections.objective.config.code_penalty == 4.0 and sections.trainer.seed == 1


def _recipe(root: Path, sweep: str, extra: str = "") -> Path:
    recipe = root / f"sweep{zlib.crc32((sweep + extra).encode())}.yaml"
    recipe.write_text(gan_recipe(root, max_updates=8, gan=f"sweep: {sweep}\n{extra}"))
    return recipe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("w2vu_sweep"))


@pytest.fixture(scope="module")
def swept(corpus) -> Path:
    from w2v.cli import main

    assert main([str(_recipe(corpus, GRID)), "--out", str(corpus / "run")]) == 0
    return corpus / "run"


def _rows(run: Path, stage: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if r.get("stage") == stage]


def test_each_configuration_trains_as_its_own_sub_run(swept):
    gan = swept / "gan"
    listed = json.loads((gan / "sweep.json").read_text())["configurations"]
    assert [c["name"] for c in listed] == NAMES
    assert listed[1]["values"] == {"seed": 2, "code_penalty": 3.0}
    weights = []
    for name in NAMES:
        assert (gan / name / "DONE").exists() and (gan / name / "summary.json").exists()
        assert json.loads((gan / name / "summary.json").read_text())["updates"] == 8
        kept = sorted(p.name for p in (swept / "checkpoints" / "gan" / name).glob("update_*.pt"))
        assert kept == ["update_4.pt", "update_8.pt"]
        assert _rows(swept, f"gan/{name}")                 # its own metrics rows
        weights.append(torch.load(gan / name / "model.pt", weights_only=True)["state_dict"])
    assert not (gan / "model.pt").exists()                 # select_gan chooses the model
    differs = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert differs                                         # the seeds gave two different GANs


def test_select_gan_ranks_every_checkpoint_of_every_configuration(swept):
    from w2v.train.checkpoint import load_checkpoint

    lines = (swept / "select" / "selection.tsv").read_text().splitlines()
    header, rows = lines[0].split("\t"), [dict(zip(lines[0].split("\t"), l.split("\t")))
                                          for l in lines[1:]]
    assert header == ["checkpoint", "weighted_lm_ppl", "lm_ppl", "vocab_usage", "per",
                      "configuration", "chosen"]
    assert sorted((r["configuration"], r["checkpoint"]) for r in rows) == sorted(
        (n, c) for n in NAMES for c in ("final", "update_4", "update_8"))
    scores = {r["configuration"]: [float(x["weighted_lm_ppl"]) for x in rows
                                   if x["configuration"] == r["configuration"]] for r in rows}
    assert scores[NAMES[0]] != scores[NAMES[1]]            # the two sub-runs score differently
    chosen = [r for r in rows if r["chosen"] == "*"]
    assert len(chosen) == 1
    best = chosen[0]
    assert float(best["weighted_lm_ppl"]) == min(float(r["weighted_lm_ppl"]) for r in rows)
    results = json.loads((swept / "select" / "results.json").read_text())
    assert (results["configuration"], results["chosen"]) == (best["configuration"],
                                                             best["checkpoint"])
    # the written model is that checkpoint of that configuration
    ckpt = (swept / "gan" / best["configuration"] / "model.pt") if best["checkpoint"] == "final" \
        else swept / "checkpoints" / "gan" / best["configuration"] / f"{best['checkpoint']}.pt"
    state = torch.load(ckpt, weights_only=True)["state_dict"] if best["checkpoint"] == "final" \
        else load_checkpoint(ckpt)["model"]
    written = torch.load(swept / "select" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(written[k], state[k]) for k in state)
    # PER is reported for every row, and the label-chosen run is named, not used
    assert all(r["per"] for r in rows)
    oracle = results["oracle_choice"]
    assert oracle["valid_per"] == pytest.approx(min(float(r["per"]) for r in rows), abs=0.01)
    assert oracle["configuration"] in NAMES


def test_a_rerun_skips_finished_configurations(swept, caplog):
    """An interrupted sweep (the stage not done, its second configuration gone) trains only
    what is missing when run again."""
    import shutil

    from w2v.cli import main

    first, second = (swept / "gan" / n for n in NAMES)
    before = (first / "model.pt").stat().st_mtime_ns, len(_rows(swept, f"gan/{NAMES[0]}"))
    (swept / "gan" / "DONE").unlink()
    shutil.rmtree(second)
    shutil.rmtree(swept / "checkpoints" / "gan" / NAMES[1])
    rows_second = len(_rows(swept, f"gan/{NAMES[1]}"))
    with caplog.at_level("INFO", logger="w2v"):
        assert main([str(_recipe(swept.parent, GRID)), "--out", str(swept),
                     "--stages", "gan"]) == 0
    assert f"`{NAMES[0]}` already done; skipping" in caplog.text
    after = (first / "model.pt").stat().st_mtime_ns, len(_rows(swept, f"gan/{NAMES[0]}"))
    assert after == before                                 # not trained again
    assert (second / "DONE").exists() and (second / "model.pt").exists()
    assert len(_rows(swept, f"gan/{NAMES[1]}")) > rows_second
    assert (swept / "gan" / "DONE").exists()


def test_one_run_after_a_sweep_is_selected_alone(swept):
    """`sweep=null` reruns the stage as one run: select_gan no longer sees the sub-runs."""
    from w2v.cli import main

    assert main([str(_recipe(swept.parent, GRID)), "--out", str(swept), "--from", "gan",
                 "stages.gan.sweep=null"]) == 0
    assert not (swept / "gan" / "sweep.json").exists() and (swept / "gan" / "model.pt").exists()
    lines = (swept / "select" / "selection.tsv").read_text().splitlines()
    rows = [dict(zip(lines[0].split("\t"), l.split("\t"))) for l in lines[1:]]
    assert {r["checkpoint"] for r in rows} == {"final", "update_4", "update_8"}
    assert {r["configuration"] for r in rows} == {""}
    assert json.loads((swept / "select" / "results.json").read_text())["configuration"] is None


def test_a_key_that_is_no_objective_setting_exits_2_naming_the_nearest(corpus, run_cli):
    res = run_cli(_recipe(corpus, "{code_penality: [2.0, 4.0]}"), "--dry-run")
    assert res.code == 2
    assert "stages.gan.sweep.code_penality" in res.err
    assert "Did you mean `code_penalty`?" in res.err and "Traceback" not in res.err


def test_a_grid_larger_than_max_configs_exits_2_with_its_count(corpus, run_cli):
    res = run_cli(_recipe(corpus, "{code_penalty: [2, 4], seed: [0, 1, 2]}", "max_configs: 4"),
                  "--dry-run")
    assert res.code == 2
    assert "6 configurations (2 code_penalty x 3 seed)" in res.err and "`max_configs` (4)" \
        in res.err
    bad = run_cli(_recipe(corpus, "{gradient_penalty: [1.5, -1.0]}"), "--dry-run")
    assert bad.code == 2 and "stages.gan.sweep.gradient_penalty.1" in bad.err
