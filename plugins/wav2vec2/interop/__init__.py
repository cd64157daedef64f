"""Checkpoint interop for wav2vec 2.0: Hugging Face, fairseq and torchaudio in, Hugging Face out.

Every importer maps *every* source key (or drops it on purpose, or stops with
a :class:`~w2v.errors.UserError` naming it), infers the architecture from the
checkpoint, and returns a :class:`~w2v.model.SpeechModel` in eval mode with
``model.load_report`` (a :class:`LoadReport`) attached.
"""

from w2v.plugins.interop.keymap import LoadReport

from .export_hf import to_hf
from .fairseq import detect_fairseq, from_fairseq, load_fairseq
from .hf import detect_hf, from_hf, load_hf
from .torchaudio import from_torchaudio

__all__ = ["LoadReport", "detect_fairseq", "detect_hf", "from_fairseq", "from_hf",
           "from_torchaudio", "load_fairseq", "load_hf", "to_hf"]
