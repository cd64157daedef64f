"""Finite garbage in audio files: float samples far beyond full scale, and stereo files whose
channels cancel in the mono mix, are bad inputs (named by file, under the `fail` / `skip`
policy); float samples a little beyond full scale are used with one warning per file."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from w2v.data.audio import read_audio
from w2v.data.config import DataConfig
from w2v.data.sources import build_loader
from w2v.data.skips import BadInput
from w2v.errors import DataError


def _speechlike(n: int = 1600, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def huge(corpus, name="huge.wav"):
    return corpus.audio(name, data=_speechlike() * 1e30, subtype="FLOAT")


def inverted_stereo(corpus, name="inverted.wav", subtype="FLOAT"):
    left = _speechlike()
    return corpus.audio(name, data=np.stack([left, -left], axis=1), subtype=subtype)


def test_float_samples_far_beyond_full_scale_are_refused(corpus):
    path = huge(corpus)
    with pytest.raises(BadInput) as info:
        read_audio(path, sample_rate=16000)
    assert info.value.reason == "out-of-range" and info.value.path == path
    assert "1e+29" in info.value.detail or "e+29" in info.value.detail
    assert path in info.value.describe()


def test_just_past_the_refusal_threshold_is_refused_and_below_is_kept(corpus):
    loud = _speechlike() / np.abs(_speechlike()).max()
    corpus.audio("a.wav", data=loud * 101.0, subtype="FLOAT")
    with pytest.raises(BadInput, match="far beyond full scale"):
        read_audio(os.path.join(corpus.root, "a.wav"), sample_rate=16000)
    corpus.audio("b.wav", data=loud * 99.0, subtype="FLOAT")
    wave, _ = read_audio(os.path.join(corpus.root, "b.wav"), sample_rate=16000)
    assert abs(float(wave.abs().max()) - 99.0) < 1e-3


def test_slightly_loud_float_audio_is_used_with_one_warning_per_file(corpus, caplog):
    data = _speechlike() / np.abs(_speechlike()).max() * 3.0
    path = corpus.audio("loud.wav", data=data, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="w2v"):
        first, _ = read_audio(path, sample_rate=16000)
        again, _ = read_audio(path, sample_rate=16000)
    np.testing.assert_allclose(first.numpy(), data, rtol=0, atol=1e-6)
    warnings = [r.getMessage() for r in caplog.records if path in r.getMessage()]
    assert len(warnings) == 1 and "beyond full scale" in warnings[0] and "3" in warnings[0]


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_stereo_channels_that_cancel_are_refused(corpus, subtype):
    path = inverted_stereo(corpus, subtype=subtype)
    with pytest.raises(BadInput) as info:
        read_audio(path, sample_rate=16000)
    assert info.value.reason == "cancelled" and "cancel" in info.value.describe()
    assert path in info.value.describe()


def test_ordinary_stereo_and_quiet_mono_still_load(corpus):
    left, right = _speechlike(seed=1), _speechlike(seed=2)
    path = corpus.audio("stereo.wav", data=np.stack([left, right], axis=1), subtype="FLOAT")
    wave, _ = read_audio(path, sample_rate=16000)
    np.testing.assert_allclose(wave.numpy(), (left + right) / 2, atol=1e-6)
    quiet = corpus.audio("quiet.wav", data=_speechlike() * 1e-4, subtype="PCM_24")
    assert float(read_audio(quiet, sample_rate=16000)[0].abs().max()) > 0


GOOD = 12  # one bad row in 13 stays under the default `data.max_skipped` (10 %)


def _manifest_with(corpus, bad_path):
    rows = []
    for i in range(GOOD):
        rows.append((f"good/u{i}.flac", 1600))
        corpus.audio(f"good/u{i}.flac", n=1600)
    rows.insert(2, (os.path.relpath(bad_path, corpus.root), 1600))
    return corpus.manifest("train.tsv", rows)


@pytest.mark.parametrize("make", [huge, inverted_stereo], ids=["huge", "cancelled"])
def test_bad_input_policy_names_the_file(corpus, make):
    bad = make(corpus)
    manifest = _manifest_with(corpus, bad)
    cfg = DataConfig(train=manifest, bad_input="fail", max_tokens=4000, max_sample_size=2000)
    with pytest.raises(DataError) as err:
        list(build_loader(cfg, "train")[0])
    assert err.value.where == f"{manifest}:4" and bad in err.value.message
    cfg = DataConfig(train=manifest, bad_input="skip", max_tokens=4000, max_sample_size=2000)
    loader, _ = build_loader(cfg, "train")
    ids = sorted(i for b in loader for i in b.ids.tolist())
    assert ids == [i for i in range(GOOD + 1) if i != 2]
    assert [(r.path, r.line) for r in loader.skipped] == [(bad, 4)]


@pytest.fixture(scope="module")
def hf_ctc_dir(tmp_path_factory):
    """A tiny (random) Hugging Face CTC model directory with its vocab.json."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=[8, 8], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2, vocab_size=6)
    directory = tmp_path_factory.mktemp("hf_ctc")
    transformers.Wav2Vec2ForCTC(cfg).save_pretrained(directory)
    (directory / "vocab.json").write_text(json.dumps(
        {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "A": 5}))
    return directory


@pytest.mark.parametrize("make", [huge, inverted_stereo], ids=["huge", "cancelled"])
def test_transcribe_exits_2_naming_the_file(corpus, run_w2vrun, hf_ctc_dir, make):
    bad = make(corpus)
    good = corpus.audio("good.wav", data=_speechlike())
    result = run_w2vrun("transcribe", str(hf_ctc_dir), good, bad, "--device", "cpu")
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err and result.err.startswith("w2vrun: error: ")
    assert bad in result.err and "cannot transcribe" in result.err
