"""Fixtures of the transcribe/evaluate tests (helpers in ``ctc_fixtures.py``)."""

from __future__ import annotations

import pytest
from ctc_fixtures import CTCRun, make_ctc_run


@pytest.fixture(scope="session")
def ctc_run(tmp_path_factory) -> CTCRun:
    """A tiny fine-tuned model saved as a w2v run, with audio, a manifest and an LM text."""
    return make_ctc_run(tmp_path_factory.mktemp("ctc_run"))


@pytest.fixture(scope="session")
def ctc_model(ctc_run):
    """The fixture's fine-tuned model, loaded back through ``w2v.load_pretrained``."""
    import w2v

    return w2v.load_pretrained(ctc_run.checkpoint)
