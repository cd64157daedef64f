"""Determinism, the DONE marker, reuse and the default location of demo corpora."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from w2v.errors import UserError
from w2v.plugins.demo import corpus as corpus_module
from w2v.plugins.demo.corpus import corpus_path, ensure_corpus, make_spec


def fingerprint(root: Path) -> dict[str, str]:
    """Hashes of every corpus file except the run-specific ones (root line, meta, DONE)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in ("meta.json", "DONE"):
            data = path.read_bytes()
            if path.suffix == ".tsv" and path.name.count(".") == 1 and not path.name.endswith("info.tsv"):
                data = data.split(b"\n", 1)[1]  # manifests: drop the absolute root line
            out[str(path.relative_to(root))] = hashlib.sha1(data).hexdigest()
    return out


def test_same_seed_gives_the_same_corpus_and_half_built_dirs_are_rebuilt(pip_only_corpus, tmp_path,
                                                                           monkeypatch, tiny):
    dest = tmp_path / "again"
    (dest / "audio").mkdir(parents=True)
    (dest / "junk.txt").write_text("an interrupted build left this")  # no DONE marker
    monkeypatch.setattr(corpus_module, "available_sources", lambda: [])
    built = ensure_corpus(dest, engines=["espeak"], real=False, workers=1, **tiny)
    assert built == dest.absolute()
    assert (dest / "DONE").is_file() and not (dest / "junk.txt").exists()
    assert fingerprint(dest) == fingerprint(pip_only_corpus)
    assert (dest / "train.tsv").read_text().splitlines()[0] == str(dest.absolute())
    assert not list(tmp_path.glob(".again.tmp-*"))


def test_a_complete_corpus_is_reused_without_building(pip_only_corpus, monkeypatch, tiny):
    monkeypatch.setattr(corpus_module, "available_sources", lambda: [])
    done_before = (pip_only_corpus / "DONE").stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("a complete corpus must not be rebuilt")

    monkeypatch.setattr(corpus_module, "_build", no_build)
    assert ensure_corpus(pip_only_corpus, engines=["espeak-wheel"], real=False, **tiny) == pip_only_corpus
    assert (pip_only_corpus / "DONE").stat().st_mtime_ns == done_before


def test_a_different_corpus_at_the_destination_is_refused(pip_only_corpus, monkeypatch, tiny):
    monkeypatch.setattr(corpus_module, "available_sources", lambda: [])
    settings = dict(tiny, seed=4)
    with pytest.raises(UserError, match="not the requested `demo-espeak-tg-.*-s4`"):
        ensure_corpus(pip_only_corpus, engines=["espeak"], **settings)


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch, tiny):
    def broken(*args, **kwargs):
        raise RuntimeError("engine crashed")

    monkeypatch.setattr(corpus_module, "synthesize_splits", broken)
    dest = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="engine crashed"):
        ensure_corpus(dest, engines=["espeak"], real=False, workers=1, **dict(tiny, unpaired_sentences=5))
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_default_location_follows_w2v_cache_and_names_the_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("W2V_CACHE", str(tmp_path / "cache"))
    spec = make_spec(minutes=30, labeled_minutes=10, seed=1, engines=["espeak-wheel"])
    path = corpus_path(spec)
    assert path.parent == (tmp_path / "cache" / "demo").absolute()
    assert path.name == spec.corpus_id
    assert spec.corpus_id.startswith("demo-espeak-t") and spec.corpus_id.endswith("-u30-l10-s1")
    assert corpus_path(make_spec(seed=2, engines=["espeak"])).name.endswith("-s2")


def test_sizes_and_engines_are_validated():
    with pytest.raises(UserError, match="minutes"):
        make_spec(minutes=-1, engines=["espeak"])
    with pytest.raises(UserError, match="Did you mean `flite`"):
        make_spec(engines=["flute"])
    with pytest.raises(UserError, match="seed"):
        make_spec(seed=1.5, engines=["espeak"])


def test_meta_json_is_valid_json_with_build_facts(pip_only_corpus):
    meta = json.loads((pip_only_corpus / "meta.json").read_text())
    assert meta["audio"] == {"sample_rate": 16000, "channels": 1, "subtype": "PCM_16"}
    assert meta["real"]["utterances"] == 0
    assert meta["g2p"]["tool"] == "phonemizer" and meta["g2p"]["language"] == "en-us"
    assert set(meta["splits"]) == {"unlabeled", "train", "valid", "test"}
