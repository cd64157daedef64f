"""Transcripts to phones: ``phonemizer``'s espeak backend on the espeak-ng of the
``espeakng-loader`` wheel.

The wheel's library is used even where Debian's ``libespeak-ng1`` is
installed, so the phone labels of a corpus do not depend on the machine.
"""

from __future__ import annotations

import collections
import logging
from typing import Sequence

from .phones import clean_phone_string


class G2P:
    """American-English G2P without stress. ``G2P()(["THE CAT"])`` -> ``[["ð", "ə", "k", "æ", "t"]]``.

    Symbols outside the corpus phone set are mapped (:mod:`.phones`) or dropped;
    ``dropped`` counts the dropped ones.
    """

    def __init__(self, language: str = "en-us"):
        import espeakng_loader
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper

        saved = EspeakWrapper._ESPEAK_LIBRARY, EspeakWrapper._ESPEAK_DATA_PATH
        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        try:
            quiet = logging.getLogger("w2v.demo.phonemizer")
            quiet.setLevel(logging.ERROR)
            self._backend = EspeakBackend(language, with_stress=False, logger=quiet,
                                          language_switch="remove-flags")
            self.version = ".".join(str(v) for v in self._backend.version())
        finally:
            EspeakWrapper._ESPEAK_LIBRARY, EspeakWrapper._ESPEAK_DATA_PATH = saved
        self.language = language
        self.dropped: collections.Counter[str] = collections.Counter()

    def __call__(self, transcripts: Sequence[str]) -> list[list[str]]:
        from phonemizer.separator import Separator

        if not transcripts:
            return []
        raw = self._backend.phonemize([t.lower() for t in transcripts],
                                      separator=Separator(phone=" ", word=" | ", syllable=""),
                                      strip=True, njobs=1)
        out = []
        for line in raw:
            phones, dropped = clean_phone_string(line)
            self.dropped.update(dropped)
            out.append(phones)
        return out
