"""Downstream models on frozen features: the `precomputed` encoder, the `wav2letter` aggregator,
reading featurize outputs back (shards, alignment with the labels' manifest), the
`featurize_audio` stage, and the `train` stage over the `features` data source (test decoding
in the `evaluate` stage over the same source)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from w2v.build import ModelConfig, build_model
from w2v.config.structure import structure
from w2v.errors import ConfigError, DataError, FitError
from w2v.plugins.data.shards import check_aligned, load_features
from w2v.plugins.features.precomputed import FeatureInput
from w2v.plugins.features.wav2letter import Wav2LetterAggregator

torch.set_num_threads(1)

LETTERS = "ABCDE"


# ------------------------------------------------------------------ components
def test_precomputed_encoder_passes_frames_through():
    enc = FeatureInput(FeatureInput.Config(dim=6))
    x = torch.randn(2, 9, 6)
    out = enc(x, torch.tensor([9, 4]))
    assert torch.equal(out.features[0], x[0])
    assert torch.equal(out.features[1, :4], x[1, :4]) and (out.features[1, 4:] == 0).all()
    assert out.lengths.tolist() == [9, 4]
    cmvn = FeatureInput(FeatureInput.Config(dim=6, cmvn=True))
    normed = cmvn(x * 5 + 3, torch.tensor([9, 4])).features
    assert torch.allclose(normed[1, :4].mean(0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(normed[0].std(0, unbiased=False), torch.ones(6), atol=1e-3)
    with pytest.raises(FitError, match=r"\[B, T, 6\]"):
        enc(torch.randn(2, 16000))
    with pytest.raises(FitError, match="found torch.float32"):
        enc(torch.randn(2, 9, 5))
    sig = FeatureInput(FeatureInput.Config(dim=6, frame_stride=320)).produces()
    assert (sig.kind, sig.dim, sig.frame_rate) == ("features", 6, 50.0)


def test_wav2letter_is_local_and_ignores_padding():
    torch.manual_seed(0)
    config = Wav2LetterAggregator.Config(layers=[(8, 3), (8, 5)], dropout=0.0)
    agg = Wav2LetterAggregator(config, 5).eval()
    assert agg.produces().receptive_field == 1 + 2 + 4 and not agg.produces().causal
    x = torch.randn(1, 30, 5)
    y = agg(x).output
    far = x.clone()
    far[0, 20:] += 10.0                       # frame 16 sees frames 13..19 only (RF 7, centred)
    assert torch.allclose(agg(far).output[0, :17], y[0, :17], atol=1e-6)
    assert not torch.allclose(agg(far).output[0, 17], y[0, 17])
    batch = torch.cat([x, torch.randn(1, 30, 5)])
    batch[0, 22:] = 7.0                       # garbage in the padding
    out = agg(batch, torch.tensor([22, 30]))
    alone = agg(x[:, :22]).output
    assert torch.allclose(out.output[0, :22], alone[0], atol=1e-5)
    assert (out.output[0, 22:] == 0).all() and len(out.layers) == 2
    assert len(agg(x, layers=0).layers) == 1


def test_wav2letter_config_errors():
    from w2v.config.structure import structure_component

    with pytest.raises(ConfigError, match="odd kernel"):
        structure_component("aggregator", {"name": "wav2letter", "layers": [[8, 4]]},
                            path="model.aggregator")


# ------------------------------------------------------------------ featurize layout
def write_features(out: Path, name: str, manifest: Path, frames: list[np.ndarray], *,
                   shards: int = 1) -> None:
    """``frames`` (one array per manifest row) in the featurize layout, ``shards``-way."""
    from w2v.data.manifest import read_manifest, write_manifest

    m = read_manifest(str(manifest))
    out.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        rows = list(range(shard, len(frames), shards))
        stem = out / f"{name}_{shard}_{shards}"
        np.save(stem.with_suffix(".npy"), np.concatenate([frames[r] for r in rows]).astype(
            np.float16))
        stem.with_suffix(".len").write_text("".join(f"{len(frames[r])}\n" for r in rows))
        write_manifest(str(stem.with_suffix(".tsv")), m.root, [m.entries()[r] for r in rows])
        stem.with_suffix(".done").write_text("done\n")


def write_manifest(path: Path, n: int, seed: int = 0) -> Path:
    rows = [f"{path.stem}/u{i}.wav\t{1000 + 160 * i}" for i in range(n)]
    path.write_text("/nonexistent/audio\n" + "\n".join(rows) + "\n")
    return path


def test_shards_are_put_back_in_manifest_order(tmp_path):
    manifest = write_manifest(tmp_path / "train.tsv", 7)
    frames = [np.full((i + 1, 3), i, np.float32) for i in range(7)]
    write_features(tmp_path / "f", "train", manifest, frames, shards=3)
    feats = load_features(tmp_path / "f", "train")
    assert len(feats) == 7 and feats.dim == 3
    assert feats.lengths.tolist() == [1, 2, 3, 4, 5, 6, 7]
    for i in range(7):
        assert (np.asarray(feats.frames(i)) == i).all()
    from w2v.data.manifest import read_manifest
    check_aligned(feats, read_manifest(str(manifest)), "test")      # the same rows: no error


def test_broken_outputs_are_data_errors(tmp_path):
    manifest = write_manifest(tmp_path / "train.tsv", 4)
    frames = [np.ones((2, 3), np.float32)] * 4
    write_features(tmp_path / "f", "train", manifest, frames, shards=2)
    with pytest.raises(DataError, match="no features of split `valid`.*train"):
        load_features(tmp_path / "f", "valid")
    (tmp_path / "f" / "train_1_2.done").unlink()
    with pytest.raises(DataError, match="did not finish"):
        load_features(tmp_path / "f", "train")
    (tmp_path / "f" / "train_1_2.npy").unlink()
    with pytest.raises(DataError, match="incomplete"):
        load_features(tmp_path / "f", "train")
    write_features(tmp_path / "g", "train", manifest, frames)
    (tmp_path / "g" / "train_0_1.len").write_text("2\n2\n2\n")
    with pytest.raises(DataError, match="counts 6 frames"):
        load_features(tmp_path / "g", "train")


def test_features_of_other_audio_are_refused(tmp_path):
    from w2v.data.manifest import read_manifest

    a = write_manifest(tmp_path / "a.tsv", 3)
    write_features(tmp_path / "f", "a", a, [np.ones((2, 3), np.float32)] * 3)
    feats = load_features(tmp_path / "f", "a")
    other = tmp_path / "b.tsv"
    other.write_text(a.read_text().replace("u1.wav", "x1.wav"))
    with pytest.raises(DataError, match="row 1 is `a/u1.wav` there and `a/x1.wav` here"):
        check_aligned(feats, read_manifest(str(other)), "test")
    with pytest.raises(DataError, match="3 utterances but manifest .* has 4"):
        check_aligned(feats, read_manifest(str(write_manifest(tmp_path / "c.tsv", 4))), "test")


# ------------------------------------------------------------------ train over features
def synthetic_split(tmp_path: Path, name: str, n: int, rng) -> tuple[Path, list[np.ndarray]]:
    """A labelled split whose features spell its letters: each letter is 3 frames of its own
    direction (+ noise), letters separated by one quiet frame."""
    manifest = write_manifest(tmp_path / f"{name}.tsv", n)
    ltr, frames = [], []
    for _ in range(n):
        words = ["".join(rng.choice(list(LETTERS), size=rng.integers(2, 5)))
                 for _ in range(rng.integers(1, 3))]
        ltr.append(" ".join(" ".join(w) + " |" for w in words))
        f = []
        for symbol in " ".join(words):
            v = np.zeros(8, np.float32)
            v["ABCDE ".index(symbol)] = 1.0
            f += [v] * 3 + [np.zeros(8, np.float32)]
        frames.append(np.stack(f) + 0.1 * rng.standard_normal((len(f), 8)).astype(np.float32))
    (tmp_path / f"{name}.ltr").write_text("\n".join(ltr) + "\n")
    return manifest, frames


def ctc_recipe(tmp_path: Path, features: Path, splits: dict | None = None, **data) -> Path:
    """Train a CTC model on the features (`train` over the `features` source), then decode
    the test split (`evaluate` over the same source)."""
    source = {"name": "features", "path": str(features), "labels": "ltr", "max_tokens": 1500,
              "manifests": {s: str(tmp_path / f"{s}.tsv") for s in ("train", "valid", "test")},
              **(splits or {}), **data}
    recipe = {
        "data": source,
        "stages": {"ctc": {
            "name": "train",
            "model": {"encoder": {"name": "precomputed"},
                      "aggregator": {"name": "wav2letter", "layers": [[32, 3], [32, 3]],
                                     "dropout": 0.0},
                      "head": {"name": "ctc"}},
            "objective": {"name": "ctc", "apply_mask": False},
            "trainer": {"max_updates": 120, "lr": 1.0e-2, "log_interval": 20,
                        "valid_interval": 120, "save_interval": 0, "best_metric": "uer"}},
            "test": {"name": "evaluate", "models": ["ctc"]}},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def synthetic(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{s} 10\n" for s in "|ABCDE"))
    feats = tmp_path / "features"
    for name, n in (("train", 60), ("valid", 8), ("test", 10)):
        manifest, frames = synthetic_split(tmp_path, name, n, rng)
        write_features(feats, f"lab_{name}", manifest, frames, shards=2 if name == "train" else 1)
    return tmp_path, feats


def test_train_over_features_learns_to_read_them(synthetic, run_cli):
    import w2v

    tmp_path, feats = synthetic
    recipe = ctc_recipe(tmp_path, feats, {"train": "lab_train", "valid": "lab_valid",
                                          "test": "lab_test"})
    result = run_cli(recipe, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    out = tmp_path / "run" / "ctc"
    test = tmp_path / "run" / "test"
    res = json.loads((test / "results.json").read_text())
    row = res["results"][0]
    assert res["split"] == "test" and row["utterances"] == 10 and "warning" not in row
    assert row["cer"] < 0.15, row                                     # chance is ~1.0
    lines = (test / "ctc.greedy.tsv").read_text().splitlines()
    assert len(lines) == 11
    model = w2v.load_pretrained(out)
    assert model.encoder.dim == 8 and model.dictionary.symbols[4:] == list("|ABCDE")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] == 120
    assert summary["data"] == {"source": "features", "kind": "features", "dim": 8}


def test_train_over_features_user_errors_exit_2(synthetic, run_cli):
    tmp_path, feats = synthetic
    recipe = ctc_recipe(tmp_path, feats)                              # no `lab_` names
    result = run_cli(recipe, "--out", tmp_path / "run")
    assert result.code == 2 and "no features of split `train`" in result.err
    assert "Traceback" not in result.err
    recipe = ctc_recipe(tmp_path, feats, {"train": "lab_valid"})
    result = run_cli(recipe, "--out", tmp_path / "run2")
    assert result.code == 2 and "must be the same rows" in result.err, result.err
    recipe = ctc_recipe(tmp_path, feats, {"trian": "lab_train"})
    result = run_cli(recipe, "--out", tmp_path / "run3")
    assert result.code == 2 and "did you mean" in result.err.lower(), result.err
    recipe = ctc_recipe(tmp_path, feats, {"train": "lab_train"}, path=str(tmp_path / "nowhere"))
    result = run_cli(recipe, "--out", tmp_path / "run4")
    assert result.code == 2 and "neither a stage of this recipe nor an existing path" in \
        result.err, result.err


# ------------------------------------------------------------------ featurize_audio
def test_featurize_audio_untrained_logmel_and_quantized(tmp_path, audio_manifest, run_cli):
    from w2v.data.audio import read_audio
    from w2v.plugins.frontends.logmel import LogMelEncoder

    manifest, waves = audio_manifest
    recipe = {
        "data": {"train": str(manifest)},
        "model": {"encoder": {"name": "logmel", "num_mel_bins": 40}},
        "stages": {"logmel": {"name": "featurize_audio", "from": None},
                   "vq": {"name": "featurize_audio", "from": None, "feature": "quantized"}},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_cli(path, "--out", tmp_path / "run", "--stages", "logmel")
    assert result.code == 0, result.err
    feats = load_features(tmp_path / "run" / "logmel", "train")
    assert feats.dim == 40 and feats.meta["stride"] == 160
    assert feats.lengths.tolist()[2] == 0                             # 300 samples: no frame
    wave, _ = read_audio(str(Path(feats.root) / feats.entries[0][0]), sample_rate=16000)
    ref = LogMelEncoder(LogMelEncoder.Config(num_mel_bins=40))(wave[None]).features[0]
    assert torch.allclose(torch.from_numpy(np.asarray(feats.frames(0), np.float32)), ref,
                          atol=2e-2, rtol=1e-2)
    result = run_cli(path, "--out", tmp_path / "run", "--stages", "vq")
    assert result.code == 2 and "needs a model with a quantizer" in result.err


def test_untrained_model_features_are_saved_and_reproducible(tmp_path, audio_manifest, run_cli):
    """`from: null` on a network with weights: a seeded random-init control, saved as model.pt."""
    import w2v

    manifest, _ = audio_manifest
    section = {"encoder": {"name": "wav2vec_conv", "layers": [[16, 10, 5], [16, 8, 4]]},
               "quantizer": {"name": "gumbel", "groups": 2, "num_vars": 4},
               "aggregator": {"name": "wav2vec_conv_aggregator", "layers": [[16, 3, 1]]},
               "quantize": "both"}
    recipe = {"data": {"train": str(manifest)}, "model": section,
              "stages": {"a": {"name": "featurize_audio", "from": None, "seed": 3,
                               "feature": "quantized"},
                         "b": {"name": "featurize_audio", "from": None, "seed": 3,
                               "feature": "quantized"},
                         "c": {"name": "featurize_audio", "from": None, "seed": 4,
                               "feature": "quantized", "layer": 0}}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert run_cli(path, "--out", tmp_path / "run", "--stages", "a,b").code == 0
    a = load_features(tmp_path / "run" / "a", "train")
    b = load_features(tmp_path / "run" / "b", "train")
    assert np.array_equal(np.asarray(a.arrays[0]), np.asarray(b.arrays[0]))
    model = w2v.load_pretrained(tmp_path / "run" / "a")
    cfg = structure(section, ModelConfig, path=("model",))
    torch.manual_seed(3)
    fresh = build_model(cfg)
    for key, value in fresh.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    result = run_cli(path, "--out", tmp_path / "run", "--stages", "c")
    assert result.code == 2 and "`layer` selects a context block" in result.err


def test_featurize_command_gives_z_and_c_of_a_wav2vec_model(tmp_path, audio_manifest, run_cli):
    """`w2vrun featurize` covers wav2vec 1.0 (c by default, z with --feature local), and its
    output is what the `features` data source reads."""
    from w2v.checkpoint_formats import save_model
    from w2v.data.audio import read_audio

    manifest, _ = audio_manifest
    section = {"encoder": {"name": "wav2vec_conv", "layers": [[16, 10, 5], [16, 8, 4]]},
               "aggregator": {"name": "wav2vec_conv_aggregator", "layers": [[24, 3, 1]]}}
    torch.manual_seed(0)
    cfg = structure(section, ModelConfig, path=("model",))
    model = build_model(cfg).eval()
    path = save_model(model, cfg, tmp_path / "model.pt")
    for flag, name, width in ((), "c", 24), (("--feature", "local"), "z", 16):
        out = tmp_path / name
        result = run_cli("featurize", path, manifest, "--out", out, "--device", "cpu", *flag)
        assert result.code == 0, result.err
        feats = load_features(out, "train")
        assert feats.dim == width and len(feats) == 4
        wave, _ = read_audio(str(Path(feats.root) / feats.entries[0][0]), sample_rate=16000)
        with torch.no_grad():
            ref = model.extract_features(wave[None])
        expected = (ref.output if name == "c" else ref.local)[0]
        assert torch.allclose(torch.from_numpy(np.asarray(feats.frames(0), np.float32)),
                              expected, atol=1e-2, rtol=1e-2)


def test_dry_run_says_when_an_encoder_sized_by_its_data_shows_a_stand_in(run_cli):
    """Before the features or units exist, a dry run builds their encoders with a stand-in
    width or vocabulary; it says so instead of presenting those sizes as the model's."""
    from w2v.plugins.features.precomputed import FeatureInput
    from w2v.plugins.wav2vec.bert import UnitEmbedding

    recipes = Path(__file__).resolve().parents[2] / "recipes" / "demo_sized"
    result = run_cli(recipes / "features_ctc.yaml", "--dry-run")
    assert result.code == 0, result.err
    ctc = result.out.split("stage `ctc`")[1]
    assert "encoder `precomputed`: the width and frame rate come from the `features` data" \
        in ctc and "1-wide stand-in" in ctc
    assert "stand-in" not in result.out.split("stage `ctc`")[0].split("stage `pretrain`")[1]
    local = FeatureInput(FeatureInput.Config(dim=512)).produces()
    assert FeatureInput(FeatureInput.Config(dim=512)).describe_lines(local) == []
    assert UnitEmbedding(UnitEmbedding.Config(vocab_size=40)).describe_lines(local) == []
    assert "placeholder of 5 entries" in \
        UnitEmbedding(UnitEmbedding.Config()).describe_lines(local)[0]
