"""End-to-end checks of built demo corpora (tiny sizes; see conftest.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from w2v.plugins.demo.alignment import read_alignments
from w2v.plugins.demo.engines import available_engines
from w2v.plugins.demo.textnorm import letters

LABELED = ("train", "valid", "test")
ALL_SPLITS = ("unlabeled",) + LABELED


def manifest(root: Path, split: str) -> tuple[str, list[tuple[str, int]]]:
    lines = (root / f"{split}.tsv").read_text().splitlines()
    return lines[0], [(rel, int(n)) for rel, n in (line.split("\t") for line in lines[1:])]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def info(root: Path, split: str) -> list[dict[str, str]]:
    rows = [line.split("\t") for line in lines(root / f"{split}.info.tsv")]
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def sentences(root: Path, split: str) -> set[str]:
    return set(lines(root / f"{split}.wrd"))


@pytest.fixture(params=["pip_only_corpus", "full_corpus"])
def corpus(request) -> Path:
    return request.getfixturevalue(request.param)


def test_audio_matches_manifests(corpus):
    meta = json.loads((corpus / "meta.json").read_text())
    for split in ALL_SPLITS:
        root, entries = manifest(corpus, split)
        assert root == str(corpus)
        assert entries, split
        for rel, count in entries:
            found = soundfile.info(str(corpus / rel))
            assert (found.samplerate, found.channels, found.subtype) == (16000, 1, "PCM_16")
            assert found.frames == count
        seconds = sum(n for _, n in entries) / 16000
        assert seconds == pytest.approx(meta["splits"][split]["seconds"], abs=0.01)
        assert seconds >= meta["splits"][split]["target_minutes"] * 60


def test_audio_is_speech_not_silence(corpus):
    _, entries = manifest(corpus, "train")
    for rel, _ in entries:
        wave, _ = soundfile.read(str(corpus / rel), dtype="float32")
        assert 0.25 < np.abs(wave).max() <= 1.0
        assert np.sqrt(np.mean(wave ** 2)) > 0.01


def test_label_files_line_up_with_manifests(corpus):
    for split in LABELED:
        _, entries = manifest(corpus, split)
        for suffix in ("wrd", "ltr", "phn", "align.tsv"):
            assert len(lines(corpus / f"{split}.{suffix}")) == len(entries), (split, suffix)
        assert [row["key"] for row in info(corpus, split)] == [Path(rel).stem for rel, _ in entries]
    assert len(info(corpus, "unlabeled")) == len(manifest(corpus, "unlabeled")[1])


def test_letter_targets_are_fairseq_format(corpus):
    pattern = re.compile(r"^(?:[A-Z'](?: [A-Z'])* \|)(?: [A-Z'](?: [A-Z'])* \|)*$")
    ltr_dict = {line.split()[0] for line in lines(corpus / "dict.ltr.txt")}
    for split in LABELED:
        for words, ltr in zip(lines(corpus / f"{split}.wrd"), lines(corpus / f"{split}.ltr")):
            assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", words)
            assert pattern.match(ltr), ltr
            assert ltr == letters(words)
            assert set(ltr.split()) <= ltr_dict


def test_phone_files_use_the_phone_dictionary(corpus):
    counts = dict(line.split() for line in lines(corpus / "dict.phn.txt"))
    assert "|" not in counts and "sil" not in counts
    for name in [f"{s}.phn" for s in LABELED] + ["unpaired.phn"]:
        for line in lines(corpus / name):
            assert line and set(line.split()) <= set(counts), name
    assert len(lines(corpus / "unpaired.phn")) == len(lines(corpus / "unpaired.txt"))


def test_held_out_voices_and_sentences(corpus):
    speakers = {s: {row["speaker"] for row in info(corpus, s)} for s in ALL_SPLITS}
    assert not speakers["valid"] & speakers["train"]
    assert not speakers["test"] & speakers["train"]
    assert not speakers["valid"] & speakers["test"]
    assert speakers["unlabeled"] <= set(json.loads((corpus / "meta.json").read_text())["speakers"]["train"])
    text = {s: sentences(corpus, s) for s in LABELED}
    assert not text["valid"] & text["train"] and not text["test"] & text["train"]
    assert not text["valid"] & text["test"]


def test_unpaired_and_lm_text_are_disjoint_from_held_out_sentences(corpus):
    labeled = set().union(*(sentences(corpus, s) for s in LABELED))
    unpaired = set(lines(corpus / "unpaired.txt"))
    assert len(unpaired) == 120
    assert not unpaired & labeled
    lm = set(lines(corpus / "lm.txt"))
    assert not lm & (sentences(corpus, "valid") | sentences(corpus, "test"))
    assert sentences(corpus, "train") <= lm and unpaired <= lm


def test_alignments_cover_each_utterance(corpus):
    phones = {line.split()[0] for line in lines(corpus / "dict.phn.txt")} | {"sil"}
    for split in LABELED:
        _, entries = manifest(corpus, split)
        for (rel, count), segments in zip(entries, read_alignments(corpus / f"{split}.align.tsv")):
            assert segments[0][1] == 0 and segments[-1][2] == count
            for (_, _, end), (_, start, _) in zip(segments, segments[1:]):
                assert end == start
            assert all(s < e for _, s, e in segments)
            assert {p for p, _, _ in segments} <= phones
            assert sum(e - s for p, s, e in segments if p != "sil") > 0.3 * count


def test_pauses_in_alignments_are_quiet(corpus):
    """Alignment times follow the audio: long `sil` stretches are much quieter than phones."""
    for split in LABELED:
        _, entries = manifest(corpus, split)
        for (rel, _), segments in zip(entries, read_alignments(corpus / f"{split}.align.tsv")):
            wave, _ = soundfile.read(str(corpus / rel), dtype="float64")
            speech = np.concatenate([wave[s:e] for p, s, e in segments if p != "sil"])
            level = np.sqrt(np.mean(speech ** 2))
            for phone, start, end in segments:
                if phone == "sil" and end - start >= 800:
                    assert np.sqrt(np.mean(wave[start:end] ** 2)) < 0.2 * level, (rel, start, end)


def test_corpus_id_names_the_engine_set(pip_only_corpus, full_corpus):
    pip_meta = json.loads((pip_only_corpus / "meta.json").read_text())
    assert pip_meta["corpus_id"].startswith("demo-espeak-tg-u0.25-l0.2-")
    assert pip_meta["corpus_id"].endswith("-s3")
    assert list(pip_meta["engines"]) == ["espeak"]
    assert {row["engine"] for s in ALL_SPLITS for row in info(pip_only_corpus, s)} == {"espeak"}
    assert pip_meta["text"]["sources_per_role"]["train"] == ["generator"]
    full_meta = json.loads((full_corpus / "meta.json").read_text())
    engines = available_engines()
    assert full_meta["corpus_id"].startswith("demo-" + "+".join(engines) + "-t")
    assert list(full_meta["engines"]) == engines
    used = {row["engine"] for s in ALL_SPLITS for row in info(full_corpus, s)}
    assert used <= set(engines)
    assert (pip_only_corpus / "DONE").read_text().strip() == pip_meta["corpus_id"]


def test_meta_lists_voices_per_split(full_corpus):
    meta = json.loads((full_corpus / "meta.json").read_text())
    for split in ALL_SPLITS:
        rows = info(full_corpus, split)
        assert meta["splits"][split]["utterances"] == len(rows)
        assert meta["splits"][split]["voices"] == sorted({f"{r['engine']}:{r['voice']}" for r in rows})
    assert meta["seed"] == 3 and meta["sizes"]["labeled_minutes"] == 0.2
    assert meta["build_seconds"] > 0 and meta["disk_mb"] > 0


@pytest.mark.skipif(not Path("/usr/share/pocketsphinx/test/data/librivox").is_dir(),
                    reason="Debian pocketsphinx-testdata is not installed")
def test_real_speech_split(full_corpus):
    root, entries = manifest(full_corpus, "real")
    assert root == str(full_corpus) and len(entries) == 12
    words = lines(full_corpus / "real.wrd")
    assert "HE WAS NOT AN ILL DISPOSED YOUNG MAN" in words
    assert "GO FORWARD TEN METERS" in words
    assert len(lines(full_corpus / "real.ltr")) == len(lines(full_corpus / "real.phn")) == 12
    total = 0
    for rel, count in entries:
        found = soundfile.info(str(full_corpus / rel))
        assert found.samplerate == 16000 and found.frames == count
        total += count
    assert 35 < total / 16000 < 50
    assert not (full_corpus / "real.align.tsv").exists()
