"""Tiny demo corpora shared by the demo tests (each builds in one to a few seconds)."""

from __future__ import annotations

import pytest

#: Sizes of the tiny test corpora: ~15 s unlabeled, ~12 s train, ~6 s valid and test.
TINY = dict(minutes=0.25, labeled_minutes=0.2, eval_minutes=0.1, unpaired_sentences=120, seed=3)


@pytest.fixture
def tiny() -> dict:
    """Sizes and seed of the shared tiny corpora."""
    return dict(TINY)


@pytest.fixture(scope="session")
def pip_only_corpus(tmp_path_factory):
    """The pip-only baseline: espeak-ng from the wheel, built-in grammar text, no real split
    (Debian text sources hidden, as on a machine without them)."""
    from w2v.plugins.demo import corpus

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(corpus, "available_sources", lambda: [])
        return corpus.build_corpus(tmp_path_factory.mktemp("pip") / "corpus", engines=["espeak-wheel"],
                                   real=False, **TINY)


@pytest.fixture(scope="session")
def full_corpus(tmp_path_factory):
    """Every engine and text source installed on this machine."""
    from w2v.plugins.demo.corpus import build_corpus

    return build_corpus(tmp_path_factory.mktemp("full") / "corpus", **TINY)
