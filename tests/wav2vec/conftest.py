"""Fixtures of the wav2vec tests: a few real wav files with a manifest, and a tiny demo corpus."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def audio_manifest(tmp_path):
    """``(manifest path, waves)``: 4 wav files of 0.02-0.3 s (one shorter than a wav2vec frame)
    with fairseq manifest ``train.tsv``."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    root = tmp_path / "audio"
    root.mkdir()
    lengths = [4000, 2500, 300, 4800]
    waves = []
    rows = []
    for i, n in enumerate(lengths):
        t = np.arange(n) / 16000
        wave = (0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(n))
        wave = wave.astype(np.float32)
        sf.write(root / f"u{i}.wav", wave, 16000, subtype="FLOAT")
        waves.append(wave)
        rows.append(f"u{i}.wav\t{n}")
    manifest = tmp_path / "train.tsv"
    manifest.write_text(str(root) + "\n" + "\n".join(rows) + "\n")
    return manifest, waves


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A tiny demo corpus (~15 s unlabelled, ~12 s labelled, with phone alignments)."""
    from w2v.plugins.demo.corpus import ensure_corpus

    return ensure_corpus(tmp_path_factory.mktemp("w2v1") / "corpus", minutes=0.25,
                         labeled_minutes=0.2, eval_minutes=0.1, unpaired_sentences=120, seed=3,
                         real=False)
