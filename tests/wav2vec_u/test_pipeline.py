"""wav2vec-U end to end at tiny size: segment features -> text -> GAN -> selection -> PER.

The audio side is synthetic feature shards (each phone a point in 8-d with noise,
2-4 frames per phone), so the test needs no corpus and no featurize stage; the
text side is unpaired sentences over a lexicon of the same phones.
"""

from __future__ import annotations

import json

import pytest

from w2vu_corpus import gan_recipe, write_corpus


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from w2v.cli import main

    root = write_corpus(tmp_path_factory.mktemp("w2vu"))
    recipe = root / "w2vu.yaml"
    recipe.write_text(gan_recipe(root, max_updates=12, gan="valid: false"))
    code = main([str(recipe), "--out", str(root / "run")])
    assert code == 0
    return root / "run"


def test_every_stage_leaves_its_outputs(run):
    for stage in ("segment", "text", "gan", "select"):
        assert (run / stage / "DONE").exists(), stage
    meta = json.loads((run / "segment" / "features.json").read_text())
    assert meta["dim"] == 8 and meta["segmented"] and meta["splits"]["train"]["manifest"]
    assert (run / "text" / "lm.phones.arpa").exists()
    lines = (run / "text" / "train.phn").read_text().splitlines()
    assert len(lines) == 200 and all(l.startswith("<SIL>") for l in lines)


def test_the_gan_alternates_generator_and_discriminator_updates(run):
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    gan = [r for r in rows if r.get("stage") == "gan" and "loss" in r]
    assert gan and all(isinstance(r["loss"], float) for r in gan)
    keys = set().union(*(r.keys() for r in gan))
    assert {"dense_g", "code_pen", "smoothness"} <= keys      # generator updates ran
    assert {"dense_d", "token_d", "grad_pen"} <= keys         # and discriminator updates


def test_selection_ranks_every_checkpoint_without_labels_and_reports_per(run):
    table = (run / "select" / "selection.tsv").read_text().splitlines()
    header, rows = table[0].split("\t"), [r.split("\t") for r in table[1:]]
    assert header[:2] == ["checkpoint", "weighted_lm_ppl"]
    assert len(rows) >= 3                           # update_4, update_8, update_12 / final
    chosen = [r for r in rows if r[-1] == "*"]
    assert len(chosen) == 1
    assert float(chosen[0][1]) == min(float(r[1]) for r in rows)
    results = json.loads((run / "select" / "results.json").read_text())
    test = results["splits"]["test"]
    assert 0 <= test["per"] and test["chance_per"] > 50
    oracle = results["oracle_choice"]
    assert oracle["checkpoint"] in {r[0] for r in rows}
    assert oracle["valid_per"] == min(float(r[4]) for r in rows) or \
        abs(oracle["valid_per"] - min(float(r[4]) for r in rows)) < 0.01
    assert 0 <= oracle["splits"]["test"]["per"]
    assert (run / "select" / "test.hyp.phn").read_text().count("\n") == 12


@pytest.fixture(scope="module")
def run_v2(run):
    """wav2vec-U 2.0's path on the same data: raw features, a strided generator with batch
    norm and a residual branch, and k-means targets for the auxiliary loss."""
    from w2v.cli import main

    root = run.parent
    recipe = root / "w2vu2.yaml"
    recipe.write_text(f"""
trainer: {{precision: fp32, max_updates: 6, log_interval: 2, save_interval: 3, keep_last: 10,
           lr: 1.0e-3, clip_norm: 5.0,
           group_optimizers: {{generator: {{lr: 1.0e-3}}, discriminator: {{lr: 1.0e-3}}}}}}
stages:
  targets: {{name: kmeans_targets, from: {root / 'feats'}, clusters: 6, sample_frames: 1000,
            iterations: 10}}
  text: {{name: prepare_text, text: {root / 'text.txt'}, lexicon: {root / 'lexicon.txt'},
         sil_prob: 0.5, lm_order: 3}}
  gan:
    name: train_gan
    aux_targets: targets
    data: {{name: features, path: {root / 'feats'}, max_tokens: 8000,
           sources: {{text: {{name: units, path: text, ext: phn, valid: null}}}}}}
    model: {{encoder: {{name: precomputed}},
            head: {{name: wav2vec_u_generator, kernel: 9, stride: 3, batch_norm: 30.0,
                   residual: true}}}}
    objective: {{name: wav2vec_u, discriminator: {{dim: 16, depth: 2, kernel: 4}},
                mmi_weight: 0.5, target_dim: 6, smoothness_weight: 1.5, code_penalty: 3.0}}
  select: {{name: select_gan, from: gan, features: {root / 'feats'}, text: text}}
""")
    assert main([str(recipe), "--out", str(root / "run2")]) == 0
    return root / "run2"


def test_v2_trains_the_auxiliary_loss_on_kmeans_targets(run_v2):
    km = (run_v2 / "targets" / "train.km").read_text().splitlines()
    assert len(km) == 40 and all(0 <= int(t) < 6 for line in km for t in line.split())
    rows = [json.loads(l) for l in (run_v2 / "metrics.jsonl").read_text().splitlines()]
    gan = [r for r in rows if r.get("stage") == "gan"]
    assert any("mmi" in r for r in gan)
    assert json.loads((run_v2 / "select" / "results.json").read_text())["splits"]["test"]
