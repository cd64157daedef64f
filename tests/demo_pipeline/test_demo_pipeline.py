"""A miniature of the README's main job: recipes/demo.yaml end to end at tiny sizes.

The demo corpus is built small in a temporary cache (the `demo:` references
honour W2V_CACHE and W2V_DEMO_*), every stage trains for a few updates, and the
outputs the README promises must exist and be well formed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"
TRAIN_STAGES = ("pretrain", "probe_pretrained", "probe_random", "probe_logmel", "finetune")

TINY = [
    "model.encoder.num_mel_bins=20",
    "model.aggregator.embed_dim=16", "model.aggregator.layers=1", "model.aggregator.ffn_dim=32",
    "model.aggregator.heads=2", "model.aggregator.conv_pos=4", "model.aggregator.conv_pos_groups=2",
    "model.quantizer.num_vars=8", "model.quantizer.dim=16", "objective.final_dim=16",
    "objective.num_negatives=5", "data.max_tokens=400000", "data.max_sample_size=80000",
    "trainer.precision=fp32",
    *[f"stages.{s}.trainer.max_updates=3" for s in TRAIN_STAGES],
    *[f"stages.{s}.trainer.valid_interval=3" for s in TRAIN_STAGES],
    *[f"stages.{s}.model.head.lstm_dim=8" for s in ("probe_pretrained", "probe_random",
                                                    "probe_logmel")],
    "stages.evaluate.decoders.lm.beam=4",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    import os

    from w2v import plugin_manager
    from w2v.cli import main

    tmp = tmp_path_factory.mktemp("demo")
    env = {"W2V_CACHE": str(tmp / "cache"), "W2V_DEMO_MINUTES": "0.5",
           "W2V_DEMO_LABELED_MINUTES": "0.4", "W2V_DEMO_SEED": "3"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    plugin_manager.reset()
    try:
        code = main([str(RECIPE), "--out", str(tmp / "run"), *TINY])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert code == 0
    return tmp / "run"


def test_every_stage_completes_and_leaves_its_outputs(demo_run):
    assert (demo_run / "resolved.yaml").exists()
    for stage in (*TRAIN_STAGES, "evaluate", "report"):
        assert (demo_run / stage / "DONE").exists(), stage
    for stage in TRAIN_STAGES:
        assert (demo_run / stage / "model.pt").stat().st_size > 0
    lines = [json.loads(l) for l in (demo_run / "metrics.jsonl").read_text().splitlines()]
    train = [l for l in lines if l.get("split", "train") == "train"]
    assert {"stage", "step", "loss", "lr", "step_time_s"} <= set(train[0])
    pre = [l for l in lines if l["stage"] == "pretrain" and l.get("split", "train") == "train"]
    assert {"code_perplexity", "accuracy", "temp"} <= set(pre[-1])


def test_results_table_is_well_formed(demo_run):
    results = json.loads((demo_run / "evaluate" / "results.json").read_text())
    rows = results["results"]
    models = {r["model"] for r in rows}
    assert models == {"probe_pretrained", "probe_random", "probe_logmel", "finetune"}
    assert {r["decoder"] for r in rows} == {"greedy", "lm"}
    for r in rows:
        assert 0.0 <= r["cer"] and 0.0 <= r["wer"] and r["utterances"] > 0
        assert (demo_run / "evaluate" / r["errors_file"]).exists()
    report = (demo_run / "report" / "report.md").read_text()
    table = [l for l in report.splitlines() if l.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert all(len(l.split("|")) == 8 for l in table)
    assert re.search(r"\(\w+ decoder\) against `probe_random` \(\w+ decoder\): CER is "
                     r"(the same|[\d.]+ points (higher \(worse\)|lower \(better\)))", report)
    for stage in TRAIN_STAGES:
        assert (demo_run / "report" / f"{stage}.png").stat().st_size > 1000


def test_probes_are_weighted_layer_probes_and_the_report_names_their_weights(demo_run):
    """The demo's probes read the benchmark's weighted sum of every hidden state: the
    pretrained and random probes weigh the input and the one block, log-mel its one layer."""
    rows = json.loads((demo_run / "evaluate" / "results.json").read_text())["results"]
    weights = {r["model"]: r.get("layer_weights") for r in rows}
    for probe in ("probe_pretrained", "probe_random"):
        assert list(weights[probe]) == ["input", "0"]
        assert sum(weights[probe].values()) == pytest.approx(1.0, abs=1e-5)
    assert weights["probe_logmel"] == {"encoder": 1.0}
    assert weights["finetune"] is None                 # fine-tuning reads the last layer
    report = (demo_run / "report" / "report.md").read_text()
    assert re.search(r"Learned layer weights .*`probe_pretrained` \(input [\d.]+, 0 [\d.]+; "
                     r"heaviest: (input|block 0)\)", report)


def test_lm_text_is_disjoint_from_the_evaluated_transcripts(demo_run):
    lm = json.loads((demo_run / "evaluate" / "results.json").read_text())["lm"]
    assert lm["words"] > 0 and "oov_rate" in lm


def test_probe_arms_train_the_same_number_of_parameters(demo_run):
    def trainable(stage):
        return json.loads((demo_run / stage / "summary.json").read_text())["trainable_parameters"]

    assert trainable("probe_pretrained") == trainable("probe_random")
    # the probe trains its head only: far fewer parameters than the whole model
    total = json.loads((demo_run / "probe_pretrained" / "summary.json").read_text())["parameters"]
    assert trainable("probe_pretrained") < total


def test_skip_policy_lists_left_out_files_in_the_stage_directory(demo_run, tmp_path):
    from w2v.cli import main

    corpus = next((demo_run.parent / "cache" / "demo").iterdir())
    lines = (corpus / "unlabeled.tsv").read_text().splitlines()
    manifest = tmp_path / "with_missing.tsv"
    manifest.write_text("\n".join([*lines, "audio/unlabeled/not-there.wav\t32000"]) + "\n")
    run = tmp_path / "run"
    code = main([str(RECIPE), "--out", str(run), "--stages", "pretrain", *TINY,
                 f"data.train={manifest}", "data.valid=null", "data.bad_input=skip",
                 "data.max_skipped=0.5",   # 1 of a tiny corpus' 7 files is over the 10 % default
                 "stages.pretrain.trainer.max_updates=1"])
    assert code == 0
    rows = (run / "pretrain" / "skipped.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["source", "line", "path", "reason"]
    assert len(rows) == 2 and "not-there.wav" in rows[1]
    assert rows[1].split("\t")[1] == str(len(lines) + 1)
