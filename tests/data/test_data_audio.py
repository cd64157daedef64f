"""Reading audio: formats, stereo, resampling, and every bad-input reason."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from w2v.data.audio import read_audio
from w2v.data.skips import BadInput


@pytest.mark.parametrize("ext, tol", [("wav", 1e-6), ("flac", 1e-4)])
def test_reads_wav_and_flac_as_float32_mono(corpus, ext, tol):
    data = (0.2 * np.sin(np.arange(800) / 7.0)).astype(np.float32)
    path = corpus.audio(f"a.{ext}", data=data, subtype="FLOAT" if ext == "wav" else None)
    wave, rate = read_audio(path, sample_rate=16000, expected_samples=800)
    assert wave.dtype == torch.float32 and wave.shape == (800,) and rate == 16000
    assert torch.allclose(wave, torch.from_numpy(data), atol=tol)


def test_reads_ogg(corpus):
    path = corpus.audio("a.ogg", n=4000)
    wave, _ = read_audio(path, sample_rate=16000)
    assert wave.shape == (sf.info(path).frames,) and torch.isfinite(wave).all()


def test_stereo_is_averaged(corpus):
    left = np.full(500, 0.5, np.float32)
    right = np.linspace(-0.5, 0.5, 500, dtype=np.float32)
    path = corpus.audio("st.wav", data=np.stack([left, right], 1), subtype="FLOAT")
    wave, _ = read_audio(path, sample_rate=16000)
    assert torch.allclose(wave, torch.from_numpy((left + right) / 2), atol=1e-6)


def test_other_rates_are_resampled(corpus):
    data = (0.3 * np.sin(np.arange(4000) * 2 * np.pi * 440 / 8000)).astype(np.float32)
    path = corpus.audio("low.wav", data=data, sr=8000, subtype="FLOAT")
    wave, rate = read_audio(path, sample_rate=16000, expected_samples=4000)
    assert rate == 8000 and wave.shape == (8000,)
    assert torch.allclose(wave, AF.resample(torch.from_numpy(data), 8000, 16000))


def _cut(path, keep):
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:keep] if keep >= 0 else raw[:len(raw) + keep])


def _case(corpus, reason):
    """Write a file with the given problem; returns (path, kwargs for read_audio)."""
    if reason == "missing":
        return corpus.root + "/absent.wav", {}
    if reason == "unreadable":
        path = corpus.audio("hdr.flac")
        _cut(path, 20)
        return path, {}
    if reason == "truncated-wav":
        path = corpus.audio("cut.wav", n=4000)
        _cut(path, -3000)
        return path, {}
    if reason == "truncated-flac":
        path = corpus.audio("cut.flac", n=16000)
        _cut(path, len(open(path, "rb").read()) // 2)
        return path, {}
    if reason == "empty":
        return corpus.audio("empty.wav", data=np.zeros(0, np.float32)), {}
    if reason == "silent":
        return corpus.audio("zero.flac", data=np.zeros(900, np.float32)), {}
    if reason == "nan":
        data = np.full(700, 0.1, np.float32)
        data[17] = np.nan
        return corpus.audio("nan.wav", data=data, subtype="FLOAT"), {}
    if reason == "inf":
        data = np.full(700, 0.1, np.float32)
        data[3] = np.inf
        return corpus.audio("inf.wav", data=data, subtype="FLOAT"), {}
    if reason == "too-short":
        return corpus.audio("short.wav", n=300), {"min_samples": 400}
    if reason == "size-mismatch":
        return corpus.audio("sz.wav", n=300), {"expected_samples": 301}
    raise AssertionError(reason)


CASES = {"missing": "missing", "unreadable": "unreadable", "truncated-wav": "truncated",
         "truncated-flac": "truncated", "empty": "empty", "silent": "silent",
         "nan": "non-finite", "inf": "non-finite", "too-short": "too-short",
         "size-mismatch": "size-mismatch"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_input_raises_its_reason(corpus, case):
    path, kwargs = _case(corpus, case)
    with pytest.raises(BadInput) as err:
        read_audio(path, sample_rate=16000, **kwargs)
    assert err.value.reason == CASES[case]
    assert err.value.path == path and path in err.value.describe()


def test_nan_detail_names_the_sample(corpus):
    path, _ = _case(corpus, "nan")
    with pytest.raises(BadInput, match="sample 17"):
        read_audio(path, sample_rate=16000)


def test_too_short_is_checked_after_resampling(corpus):
    path = corpus.audio("low.wav", n=300, sr=8000)  # 600 samples at 16 kHz
    wave, _ = read_audio(path, sample_rate=16000, min_samples=500)
    assert wave.shape == (600,)
    with pytest.raises(BadInput, match="600 samples"):
        read_audio(path, sample_rate=16000, min_samples=601)
