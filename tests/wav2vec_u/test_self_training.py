"""wav2vec-U self-training: the chosen generator's pseudo-labels, and a CTC model trained on them.

* a constructed generator (one-hot features, a kernel-1 convolution that maps feature d to
  phone d) labels known utterances: the ``.phn`` lines are its Viterbi phones (repeats
  merged, silence dropped), the stage directory reads as a labelled ``features`` source;
* an utterance the generator hears as silence only is counted and follows the bad-input
  policy (``fail`` stops, ``skip`` lists it and training leaves it out);
* a tiny pipeline runs through the recipe machinery: segment -> text -> GAN -> select ->
  pseudo_label -> CTC on the pseudo-labels -> evaluate (PER), beside the supervised CTC
  bound trained on the true labels of the same frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from w2vu_corpus import write_corpus

SYMBOLS = ["a", "b", "c", "<SIL>"]
#: per utterance, the generator's best symbol per frame, and the expected pseudo-label
UTTERANCES = [("a a b <SIL> c", "a b c"), ("<SIL> <SIL>", ""), ("b b b a", "b a"),
              ("c a <SIL> a", "c a a")]


def _frames(symbols: str) -> torch.Tensor:
    """One-hot frames ``[T, 4]`` (scaled), feature d standing for SYMBOLS[d]."""
    ids = torch.tensor([SYMBOLS.index(s) for s in symbols.split()])
    return 5.0 * torch.nn.functional.one_hot(ids, len(SYMBOLS)).float()


def _write_features(root: Path, split: str, utterances: list[str], dim_scale: int = 1) -> None:
    """Feature shards of ``split`` (with their manifest rows) under ``root``."""
    from w2v.plugins.data.shards import ShardWriter

    writer = ShardWriter(root, split, dim=len(SYMBOLS) * dim_scale)
    for symbols in utterances:
        writer.add(_frames(symbols).repeat_interleave(dim_scale, 0).repeat(1, dim_scale))
    writer.finish("/audio", [(f"{split}/u{i}.wav", 16000 + i) for i in range(len(utterances))])


@pytest.fixture
def constructed(tmp_path):
    """A generator whose outputs are known, the features it reads and frames to train on."""
    from w2v.build import ModelConfig, build_model
    from w2v.checkpoint_formats import save_model
    from w2v.config.structure import structure
    from w2v.data.dictionary import Dictionary
    from w2v.plugins.data.shards import write_meta

    dictionary = Dictionary.from_symbols(SYMBOLS)
    cfg = structure({"encoder": {"name": "precomputed", "dim": len(SYMBOLS)},
                     "head": {"name": "wav2vec_u_generator", "kernel": 1, "dropout": 0.0}},
                    ModelConfig, path=("model",))
    model = build_model(cfg, dictionary=dictionary).eval()
    with torch.no_grad():   # phone logit of symbol d = feature d
        weight = torch.zeros_like(model.head.conv.weight)
        for d, symbol in enumerate(SYMBOLS):
            weight[dictionary.index(symbol), d, 0] = 1.0
        model.head.conv.weight.copy_(weight)
    save_model(model, cfg, tmp_path / "select" / "model.pt", dictionary=dictionary)
    (tmp_path / "select" / "results.json").write_text(json.dumps({"chosen": "update_7"}))
    utterances = [u for u, _ in UTTERANCES]
    for split in ("train", "valid", "test"):
        _write_features(tmp_path / "segments", split, utterances)
        _write_features(tmp_path / "frames", split, utterances, dim_scale=2)   # twice as long
    splits = {s: {"utterances": 4, "manifest": str(tmp_path / f"{s}.tsv")}
              for s in ("train", "valid", "test")}
    write_meta(tmp_path / "segments", {"dim": 4, "stride": 640, "splits": splits})
    write_meta(tmp_path / "frames", {"dim": 8, "stride": 320, "sample_rate": 16000,
                                     "splits": splits})
    return tmp_path


def _pseudo_label_recipe(root: Path, bad_input: str, max_skipped: float = 0.5) -> Path:
    recipe = root / f"pl_{bad_input}_{max_skipped}.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"bad_input": bad_input, "max_skipped": max_skipped},
        "stages": {"pseudo_label": {"name": "pseudo_label", "from": str(root / "select"),
                                    "features": str(root / "segments"),
                                    "frames": str(root / "frames")}}}))
    return recipe


def test_pseudo_labels_are_the_generators_viterbi_phones(constructed, run_cli):
    from w2v.data.dictionary import Dictionary
    from w2v.plugins.data.shards import load_features, read_meta

    root = constructed
    result = run_cli(_pseudo_label_recipe(root, "skip"), "--out", root / "run")
    assert result.code == 0, result.err
    out = root / "run" / "pseudo_label"
    expected = [phones for _, phones in UTTERANCES]
    for split in ("train", "valid"):
        assert (out / f"{split}.phn").read_text().split("\n")[:-1] == expected
        assert (out / f"{split}.tsv").read_text().splitlines() == \
            ["/audio"] + [f"{split}/u{i}.wav\t{16000 + i}" for i in range(4)]
    assert not (out / "test.phn").exists()
    dictionary = Dictionary.load(out / "dict.phn.txt")      # the phones, silence left out
    assert dictionary.symbols[dictionary.nspecial:] == ["a", "b", "c"]
    assert dictionary.counts[dictionary.nspecial:] == [4, 2, 2]   # counted over train
    meta = read_meta(out)
    assert meta["splits"]["train"]["manifest"] == str(out / "train.tsv")
    assert meta["splits"]["test"]["manifest"] == str(root / "test.tsv")   # its real labels
    frames = load_features(out, "train")                     # the linked frames, not segments
    assert frames.dim == 8 and frames.lengths.tolist() == [10, 4, 8, 8]
    assert np.array_equal(np.asarray(frames.arrays[0]),
                          np.asarray(load_features(root / "frames", "train").arrays[0]))
    summary = json.loads((out / "pseudo_labels.json").read_text())
    assert summary["chosen"] == "update_7"
    assert summary["splits"]["train"] == {"utterances": 4, "phones": 8, "empty": 1}


def test_an_empty_pseudo_label_is_reported_and_left_out_of_training(constructed, run_cli):
    from w2v.data.sources import open_source
    from w2v.errors import DataError
    from w2v.plugins.data.features import FeatureSourceConfig

    root = constructed
    result = run_cli(_pseudo_label_recipe(root, "fail"), "--out", root / "fail")
    assert result.code == 2
    assert "1 of 4 utterances of split `train` got an empty pseudo-label" in result.err
    assert "/audio/train/u1.wav (line 3)" in result.err and "bad_input: skip" in result.err
    result = run_cli(_pseudo_label_recipe(root, "skip", 0.1), "--out", root / "budget")
    assert result.code == 2 and "more than `data.max_skipped` allows" in result.err

    assert run_cli(_pseudo_label_recipe(root, "skip"), "--out", root / "run").code == 0
    out = root / "run" / "pseudo_label"
    skipped = (out / "skipped.tsv").read_text().splitlines()[1:]
    assert sorted(s.split("\t")[2] for s in skipped) == ["/audio/train/u1.wav",
                                                         "/audio/valid/u1.wav"]
    assert all(s.split("\t")[3] == "empty-label" for s in skipped)
    source = open_source(FeatureSourceConfig(path=str(out), labels="phn", bad_input="skip"))
    train = source.dataset("train")
    assert train.rows.tolist() == [0, 2, 3]                  # the empty row is left out ...
    assert [s.reason for s in train.skipped] == ["empty-label"]   # ... and listed
    assert source.dictionary().string(train.target(3)) == "c a a"
    with pytest.raises(DataError, match="label line has no symbols"):
        open_source(FeatureSourceConfig(path=str(out), labels="phn")).dataset("train")


def test_an_empty_last_pseudo_label_is_still_a_row(tmp_path):
    """The label file of a split whose last utterance got no phone ends in a blank line, which
    is that row's label (blank lines beyond the rows are still dropped)."""
    from w2v.data.labels import read_label_lines
    from w2v.data.manifest import read_manifest
    from w2v.plugins.wav2vec_u.pseudo_labels import write_pseudo_labels

    manifest = tmp_path / "train.tsv"
    manifest.write_text("/audio\nu0.wav\t16000\nu1.wav\t16000\n")
    write_pseudo_labels(tmp_path / "train.phn", [["a", "b"], []])
    assert read_label_lines(str(tmp_path / "train.phn"), read_manifest(str(manifest))) == \
        ["a b", ""]
    (tmp_path / "extra.phn").write_text("a b\n\n\n\n")
    assert read_label_lines(str(tmp_path / "extra.phn"), read_manifest(str(manifest))) == \
        ["a b", ""]


# ------------------------------------------------------------------ the tiny pipeline
CTC = {"name": "train", "valid": False,
       "model": {"encoder": {"name": "precomputed", "dim": None},
                 "aggregator": {"name": "wav2letter", "layers": [[32, 3]]},
                 "head": {"name": "ctc"}},
       "objective": {"name": "ctc", "apply_mask": False},
       "trainer": {"max_updates": 60, "lr": 5.0e-3, "schedule": {"name": "fixed"},
                   "log_interval": 20, "save_interval": 60}}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from w2v.cli import main

    root = write_corpus(tmp_path_factory.mktemp("selftrain"), frames=(3, 6), entries=True)
    feats = str(root / "feats")
    recipe = {
        "data": {"bad_input": "skip", "max_skipped": 1.0},
        "trainer": {"precision": "fp32"},
        "stages": {
            "segment": {"name": "segment_features", "from": feats, "clusters": 6, "pca_dim": 8,
                        "sample_frames": 1000, "iterations": 10},
            "text": {"name": "prepare_text", "text": str(root / "text.txt"),
                     "lexicon": str(root / "lexicon.txt"), "lm_order": 3},
            "gan": {"name": "train_gan", "valid": False,
                    "data": {"name": "features", "path": "segment", "max_tokens": 4000,
                             "sources": {"text": {"name": "units", "path": "text",
                                                  "ext": "phn", "valid": None}}},
                    "model": {"encoder": {"name": "precomputed"}, "aggregator": None,
                              "head": {"name": "wav2vec_u_generator", "kernel": 3}},
                    "objective": {"name": "wav2vec_u",
                                  "discriminator": {"dim": 16, "depth": 2, "kernel": 3}},
                    "trainer": {"max_updates": 8, "log_interval": 2, "save_interval": 4,
                                "keep_last": 10, "lr": 1.0e-3, "betas": [0.5, 0.98],
                                "group_optimizers": {"generator": {"lr": 1.0e-3},
                                                     "discriminator": {"lr": 1.0e-3}}}},
            "select": {"name": "select_gan", "from": "gan", "features": "segment",
                       "text": "text"},
            # the supervised bound: the true labels of the same frames
            "ctc_supervised": {**CTC, "data": {"name": "features", "path": feats,
                                               "labels": "phn", "max_tokens": 2000}},
            "test_supervised": {"name": "evaluate", "models": ["ctc_supervised"],
                                "data": {"name": "features", "path": feats, "labels": "phn",
                                         "test": "test"}},
            # self-training: the chosen generator's pseudo-labels of train and valid
            "pseudo_label": {"name": "pseudo_label", "from": "select", "features": "segment",
                             "frames": feats},
            "self_train": {**CTC, "data": {"name": "features", "path": "pseudo_label",
                                           "labels": "phn", "max_tokens": 2000,
                                           "bad_input": "skip", "max_skipped": 1.0}},
            "test_self_train": {"name": "evaluate", "models": ["self_train"],
                                "data": {"name": "features", "path": "pseudo_label",
                                         "labels": "phn", "test": "test"}},
        }}
    path = root / "selftrain.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    assert main([str(path), "--out", str(root / "run")]) == 0
    return root / "run"


def test_the_self_trained_model_learns_the_pseudo_labels(pipeline):
    from w2v.data.dictionary import Dictionary

    hyp = (pipeline / "select" / "test.hyp.phn").read_text()   # select decodes like this
    assert hyp.count("\n") == 12
    labels = (pipeline / "pseudo_label" / "train.phn").read_text().split("\n")[:-1]
    assert len(labels) == 40
    summary = json.loads((pipeline / "pseudo_label" / "pseudo_labels.json").read_text())
    assert summary["splits"]["train"]["empty"] == sum(1 for line in labels if not line)
    rows = [json.loads(l) for l in (pipeline / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r.get("stage") == "self_train" and "loss" in r]
    assert len(losses) >= 3 and losses[-1] < losses[0]
    # the self-trained model's output layer spans the generator's phones (no silence)
    dictionary = Dictionary.load(pipeline / "pseudo_label" / "dict.phn.txt")
    assert "<SIL>" not in dictionary and {"a", "b", "c", "d", "e"} <= set(dictionary.symbols)


def test_evaluate_reports_test_per_of_both_ctc_models(pipeline):
    from w2v.plugins.wav2vec_u.selection import phone_error_rate

    for stage in ("test_supervised", "test_self_train"):
        row = json.loads((pipeline / stage / "results.json").read_text())["results"][0]
        assert row["per"] == row["wer"] and row["utterances"] == 12
        table = [l.split("\t") for l in
                 (pipeline / stage / row["errors_file"]).read_text().splitlines()[1:]]
        refs = [t[5].split() for t in table]
        hyps = [t[6].split() if len(t) > 6 else [] for t in table]
        assert refs == [l.split() for l in
                        (pipeline.parent / "audio" / "test.phn").read_text().splitlines()]
        assert abs(100 * row["per"] - phone_error_rate(hyps, refs)) < 1e-6
    supervised = json.loads((pipeline / "test_supervised" / "results.json").read_text())
    assert supervised["results"][0]["per"] < 0.5     # separable phones, true labels
