"""Resampling, alignment helpers, engine output parsers, and each installed engine."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import soundfile

from w2v.plugins.demo.alignment import (format_segments, frame_labels, normalize_segments,
                                        parse_segments, rescale_segments)
from w2v.plugins.demo.audio import resample
from w2v.plugins.demo.engines import SynthJob, engine_class
from w2v.plugins.demo.festival_engine import parse_segs
from w2v.plugins.demo.flite_engine import parse_psdur
from w2v.plugins.demo.mbrola_engine import parse_pho
from w2v.plugins.demo.voices import partition_speakers, voices_by_role

SENTENCE = "the quick brown fox jumps over the lazy dog"


def test_resample_keeps_frequency_and_length():
    rate = 22050
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    out = resample(tone, rate * 1.1, 16000)  # speed perturbation by 1.1
    assert len(out) == round(rate * 16000 / (rate * 1.1))
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert np.argmax(spectrum) * 16000 / len(out) == pytest.approx(440 * 1.1, abs=2)
    assert np.abs(out[200:-200]).max() == pytest.approx(1.0, abs=0.01)


def test_resample_removes_content_above_the_new_nyquist():
    rate = 22050
    high = np.sin(2 * np.pi * 10000 * np.arange(rate) / rate)
    assert np.abs(resample(high, rate, 16000)[500:-500]).max() < 1e-3


def test_normalize_segments_fills_gaps_and_clips():
    segments = normalize_segments([("b", 50, 120), ("a", 10, 50)], 100)
    assert segments == [("sil", 0, 10), ("a", 10, 50), ("b", 50, 100)]
    assert rescale_segments(segments, 0.5, 51) == [("sil", 0, 5), ("a", 5, 25), ("b", 25, 51)]
    assert parse_segments(format_segments(segments)) == segments


def test_frame_labels_at_a_given_hop():
    segments = [("sil", 0, 320), ("ə", 320, 960), ("n", 960, 1000)]
    assert frame_labels(segments, 3, hop=320) == ["sil", "ə", "ə"]
    assert frame_labels(segments, 7, hop=160) == ["sil", "sil", "ə", "ə", "ə", "ə", "n"]


def test_parse_flite_psdur_and_festival_segs_and_mbrola_pho():
    assert parse_psdur("pau:0.1 sh:0.2 aa:0.3 r:0.4 p:0.5", 16000) == [
        ("sil", 0, 1600), ("ʃ", 1600, 3200), ("ɑːɹ", 3200, 6400), ("p", 6400, 8000)]
    segs = "#\n0.2200 100 pau\n0.2569 100 dh\n0.3008 100 ax\n"
    assert parse_segs(segs, 16000) == [("sil", 0, 3520), ("ð", 3520, 4110), ("ə", 4110, 4813)]
    pho = "; comment\n_ 100\nD 50 0 120\n@ 60 50 110\nk 70\n"
    assert parse_pho(pho, 16000) == [("sil", 0, 1600), ("ð", 1600, 2400), ("ə", 2400, 3360),
                                     ("k", 3360, 4480)]


def test_voice_partition_holds_out_whole_speakers():
    voices = engine_class("espeak").voices()
    roles = partition_speakers(voices, seed=1)
    assert not set(roles["valid"]) & set(roles["train"]) and not set(roles["test"]) & set(roles["train"])
    assert roles["valid"] and roles["test"]
    assert partition_speakers(voices, seed=1) == roles and partition_speakers(voices, seed=2) != roles
    by_role = voices_by_role(voices, seed=1)
    assert {v.speaker for v in by_role["valid"]} == set(roles["valid"])
    # Every accent of a held-out variant is held out with it.
    held = {v.name.split("+")[-1] for v in by_role["test"] if "+" in v.name}
    assert not any(v.name.split("+")[-1] in held for v in by_role["train"] if "+" in v.name)


def _render(engine: str, voice: str, path: str):
    """Synthesise SENTENCE in a fresh process (the wheel's library stays out of pytest's)."""
    from w2v.plugins.demo.synth_worker import phonemize, synthesize_batch

    chosen = next(v for v in engine_class(engine).voices() if v.name == voice)
    job = SynthJob(key="t", text=SENTENCE, voice=chosen, rate=1.0, pitch=0.5, speed=0.95, peak=0.8,
                   path=path)
    [result] = synthesize_batch(engine, [job])
    phones = phonemize([SENTENCE.upper()])[0][0]
    return result, phones


@pytest.mark.parametrize("engine, voice", [("espeak", "en-us"), ("flite", "slt"),
                                           ("festival", "kal_diphone")])
def test_engine_writes_audio_and_an_alignment_of_what_it_said(engine, voice, tmp_path):
    if not engine_class(engine).available():
        pytest.skip(f"{engine} is not installed")
    path = tmp_path / "out.wav"
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result, phones = pool.submit(_render, engine, voice, str(path)).result()
    key, count, segments = result
    info = soundfile.info(str(path))
    assert (info.samplerate, info.frames) == (16000, count)
    spoken = [p for p, _, _ in segments if p != "sil"]
    assert segments[0][1] == 0 and segments[-1][2] == count
    if engine == "espeak":  # same G2P as the .phn labels: identical phones
        assert spoken == phones
    else:  # the engine's own lexicon: nearly the same phones
        import difflib

        assert difflib.SequenceMatcher(None, spoken, phones).ratio() > 0.8
    wave, _ = soundfile.read(str(path))
    assert np.abs(wave).max() == pytest.approx(0.8, abs=0.01)
