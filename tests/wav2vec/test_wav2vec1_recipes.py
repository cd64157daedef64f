"""The wav2vec 1.0 / vq-wav2vec recipes: every full recipe passes --dry-run; every demo-sized
variant trains for two updates on a tiny demo corpus (``demo:`` references resolve to it through
W2V_CACHE / W2V_DEMO_*), and the two pipelines leave well-formed outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import w2v
from w2v.cli import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
FULL = ["wav2vec_base", "wav2vec_large", "vq_wav2vec_gumbel", "vq_wav2vec_kmeans",
        "vq_wav2vec_bert", "mix/wav2vec2_kmeans", "mix/wav2vec_masked_contrastive",
        "mix/wav2vec2_future"]
DEMO = sorted(p.stem for p in (RECIPES / "demo_sized").glob("*.yaml"))
FAST = ["data.max_sample_size=16000", "data.max_tokens=48000", "data.min_sample_size=4000",
        "trainer.max_updates=2", "trainer.log_interval=1", "trainer.valid_interval=2",
        "trainer.save_interval=0"]


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    return {"W2V_CACHE": str(tmp_path_factory.mktemp("cache")), "W2V_DEMO_MINUTES": "0.25",
            "W2V_DEMO_LABELED_MINUTES": "0.2", "W2V_DEMO_SEED": "3"}


def run(recipe: Path, out: Path, env: dict, monkeypatch, *overrides: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main([str(recipe), "--out", str(out), *FAST, *overrides])
    assert code == 0


@pytest.mark.parametrize("name", FULL)
def test_full_recipes_pass_dry_run(name, run_cli):
    result = run_cli(RECIPES / f"{name}.yaml", "--dry-run")
    assert result.code == 0, result.err
    assert "total model parameters" in result.out


def test_paper_sizes():
    """vq-wav2vec (Gumbel) has the paper's 34M parameters, model plus prediction heads."""
    from w2v.build import build_model, build_objective
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages

    plan = plan_stages(load_recipe(str(RECIPES / "vq_wav2vec_gumbel.yaml"), []))["pretrain"]
    with torch.device("meta"):
        model = build_model(plan.sections.model)
        objective = build_objective(plan.sections.objective, model)
    total = sum(p.numel() for p in [*model.parameters(), *objective.parameters()])
    assert 33.5e6 < total < 34.5e6
    assert objective.offset_for(model) == 3 and objective.head.steps == 12


@pytest.mark.parametrize("name", [d for d in DEMO if d not in ("vq_wav2vec_bert",
                                                               "wav2vec_base",
                                                               "features_ctc")])
def test_demo_sized_recipe_trains(name, tmp_path, demo_env, monkeypatch):
    run(RECIPES / "demo_sized" / f"{name}.yaml", tmp_path / "run", demo_env, monkeypatch)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x.get("split", "train") == "train"]
    assert [x["step"] for x in train] == [1, 2]
    assert all(np.isfinite(x["loss"]) for x in train)
    assert (tmp_path / "run" / "pretrain" / "model.pt").exists()


def test_features_ctc_recipe_trains_ctc_on_the_pretrained_model_s_features(
        tmp_path, demo_env, monkeypatch):
    """recipes/demo_sized/features_ctc.yaml (the features study's base): pretrain, featurize
    the labelled splits with the pretrained model, CTC over those frames, test CER."""
    run(RECIPES / "demo_sized" / "features_ctc.yaml", tmp_path / "run", demo_env, monkeypatch,
        "stages.ctc.trainer.max_updates=2", "stages.ctc.trainer.valid_interval=2")
    from w2v.plugins.data.shards import load_features

    out = tmp_path / "run"
    pre = w2v.load_pretrained(out / "pretrain")
    feats = load_features(out / "featurize", "test")
    assert feats.dim == pre.context_signal().dim
    results = json.loads((out / "test" / "results.json").read_text())
    assert results["split"] == "test" and results["results"][0]["model"] == "ctc"
    assert results["results"][0]["utterances"] == len(feats)
    assert not (out / "export_units").exists() and not (out / "bert").exists()


def test_wav2vec_ctc_on_frozen_features(tmp_path, demo_env, monkeypatch):
    stages = ("ctc", "ctc_logmel")
    run(RECIPES / "demo_sized" / "wav2vec_base.yaml", tmp_path / "run", demo_env, monkeypatch,
        *[f"stages.{s}.trainer.max_updates=2" for s in stages],
        *[f"stages.{s}.trainer.valid_interval=2" for s in stages])
    out = tmp_path / "run"
    pre = w2v.load_pretrained(out / "pretrain")
    from w2v.data.audio import read_audio
    from w2v.plugins.data.shards import load_features

    for name, width in (("featurize", 64), ("featurize_logmel", 80)):
        for split in ("train", "valid", "test"):
            feats = load_features(out / name, split)
            assert feats.dim == width and len(feats) == len(feats.entries)
    feats = load_features(out / "featurize", "test")               # the pretrained model's c
    last = len(feats.entries) - 1                                  # the shard's last utterance
    wave, _ = read_audio(str(Path(feats.root) / feats.entries[last][0]), sample_rate=16000)
    with torch.no_grad():
        c = pre.extract_features(wave[None]).output[0]
    assert torch.allclose(torch.from_numpy(np.asarray(feats.frames(last), np.float32)), c,
                          atol=2e-2, rtol=1e-2)
    for sid, width in (("ctc", 64), ("ctc_logmel", 80)):
        model = w2v.load_pretrained(out / sid)
        assert model.encoder.dim == width and model.aggregator.num_layers == 3
        assert model.aggregator.input_dim == width and model.head.lstm is None
        results = json.loads((out / f"test_{sid}" / "results.json").read_text())
        assert results["split"] == "test" and results["results"][0]["model"] == sid
        assert results["results"][0]["utterances"] == len(load_features(out / "featurize", "test"))
    assert "ctc_logmel" in (out / "report" / "report.md").read_text()


def test_vq_wav2vec_bert_pipeline(tmp_path, demo_env, monkeypatch):
    ctc = ("ctc_bert", "ctc_vq", "ctc_logmel")
    run(RECIPES / "demo_sized" / "vq_wav2vec_bert.yaml", tmp_path / "run", demo_env, monkeypatch,
        "stages.bert.trainer.max_updates=2", "stages.bert.trainer.valid_interval=2",
        "stages.bert.data.max_tokens=512", "stages.bert.data.max_len=256",
        *[f"stages.{s}.trainer.max_updates=2" for s in ctc],
        *[f"stages.{s}.trainer.valid_interval=2" for s in ctc])
    out = tmp_path / "run"
    units = out / "export_units"
    from w2v.data.audio import read_audio
    from w2v.data.dictionary import Dictionary
    from w2v.data.manifest import read_manifest
    from w2v.plugins.data.shards import load_features
    from w2v.plugins.features.units import tokens_to_codes

    pre = w2v.load_pretrained(out / "pretrain")
    dictionary = Dictionary.load(units / "dict.src.txt")
    for split in ("train", "valid", "labeled", "labeled_valid", "labeled_test"):
        manifest = read_manifest(str(units / f"{split}.tsv"))
        lines = (units / f"{split}.src").read_text().splitlines()
        assert len(lines) == len(manifest)
    wave, _ = read_audio(manifest.audio_path(0), sample_rate=16000)
    with torch.no_grad():
        codes = pre.quantize(wave[None])[0]
        vectors = pre.quantizer(pre.encode(wave[None]).features).vectors[0]
    assert torch.equal(tokens_to_codes(lines[0].split(), 2), codes)
    bert = w2v.load_pretrained(out / "bert")
    assert bert.dictionary.symbols == dictionary.symbols
    assert bert.encoder.vocab_size == len(dictionary)
    feats = out / "featurize"
    for split in ("labeled", "labeled_valid", "labeled_test"):
        array = np.load(feats / f"{split}_0_1.npy")
        lengths = [int(x) for x in (feats / f"{split}_0_1.len").read_text().split()]
        src = (units / f"{split}.src").read_text().splitlines()
        assert lengths == [len(line.split()) for line in src]
        assert array.shape == (sum(lengths), 128) and array.dtype == np.float16
    assert not (feats / "train_0_1.npy").exists()                # only the splits asked for
    vq = load_features(out / "featurize_vq", "test")              # units embedded: code vectors
    assert vq.dim == 64 and vq.meta["feature"] == "quantized"
    torch.testing.assert_close(torch.from_numpy(np.asarray(vq.frames(0), np.float32)), vectors,
                               atol=1e-2, rtol=1e-2)
    assert list(vq.lengths) == [len(line.split()) for line in lines]   # frame for frame
    lines_bert = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()
                  if json.loads(x)["stage"] == "bert"]
    assert {"accuracy", "loss_bits", "mask_fraction"} <= set(lines_bert[0])
    widths = {"ctc_bert": 128, "ctc_vq": 64, "ctc_logmel": 80}
    for sid in ctc:
        assert w2v.load_pretrained(out / sid).encoder.dim == widths[sid]
        test = out / sid.replace("ctc_", "test_")
        assert json.loads((test / "results.json").read_text())["results"][0]["model"] == sid
    report = (out / "report" / "report.md").read_text()
    assert all(sid in report for sid in ctc)
