"""espeak-ng through the ``espeakng-loader`` wheel (ctypes, synchronous mode).

``espeak_Synth`` in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode calls back with chunks
of 22.05 kHz samples and events; with ``espeakINITIALIZE_PHONEME_EVENTS |
espeakINITIALIZE_PHONEME_IPA`` every phoneme arrives as an event holding its
IPA name (stress marks included) and its sample position. A phone lasts
until the next event; the unnamed events are pauses (see :func:`events_to_segments`).

Each utterance is synthesised by a fresh copy of the library with fixed
random seeds, so it does not depend on what the process said before.
While loaded, the wheel's library shadows Debian's ``libespeak-ng.so.1`` in
the process (same soname), so only the builder's worker processes load it.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import functools
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .engines import Engine, Rendering, SynthJob, Voice
from .phones import SILENCE, to_corpus_phone

#: English accents (espeak-ng language names; en-Shaw is Shavian script, not an accent).
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
#: Variants left out: whispered, joke and robot voices, and names espeak cannot parse.
EXCLUDED_VARIANTS = frozenset(
    "whisper whisperf Demonic fast Tweaky UniRobot anikaRobot announcer croak boris kaukovalta "
    "marcelo Storm RicishayMax RicishayMax2 RicishayMax3 robosoft robosoft2 robosoft3 robosoft4 "
    "robosoft5 robosoft6 robosoft7 robosoft8".split())
DEFAULT_RATE_WPM = 175

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_EVENT_END = 5
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


def _data_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


class _Library:
    """One private instance of the wheel's libespeak-ng.

    espeak-ng keeps synthesis state in static variables (glottal phase, noise
    generator, flutter) that ``espeak_Initialize`` does not reset, so the same
    text would sound slightly different depending on what was said before.
    Each utterance therefore gets a fresh copy of the library (about 1 ms),
    loaded from a private file name, initialised, used once and unloaded.
    """

    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        self.lib.espeak_Initialize.restype = ctypes.c_int
        options = _INITIALIZE_DONT_EXIT | _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA
        self.sample_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(_data_path()).encode(), options)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):  # noise generator, seeded from the clock
            self.lib.espeak_ng_SetRandSeed(ctypes.c_long(12345))
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def close(self) -> None:
        self.lib.espeak_Terminate()
        unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
        if unload is not None:
            unload(self.lib._handle)

    def _on_audio(self, wave, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wave, shape=(count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                name = event.id.string.decode("utf-8", errors="ignore")
                self._events.append((name, event.sample))
            elif event.type == _EVENT_END:
                self._events.append(("", event.sample))
            i += 1
        return 0

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int
                   ) -> tuple[np.ndarray, list[tuple[str, int]]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        self.lib.espeak_SetParameter(_PARAM_RANGE, pitch_range, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        self.lib.espeak_Synth(ctypes.c_char_p(data), len(data) + 1, 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        wave = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return wave, self._events


@functools.lru_cache(maxsize=1)
def _scratch_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="w2v-espeak-"))
    atexit.register(shutil.rmtree, path, True)
    return path


_copies = itertools.count()


def _seed_libc_random() -> None:
    """Breathy variants draw noise from the C library's ``rand()``: make it repeatable."""
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        ctypes.CDLL(name).srand(12345)


def synthesize(text: str, voice: str, rate: int, pitch: int, pitch_range: int
               ) -> tuple[np.ndarray, list[tuple[str, int]], int]:
    """Samples (int16), phoneme events and sample rate, from a fresh library instance."""
    import espeakng_loader

    _seed_libc_random()
    copy = _scratch_dir() / f"libespeak-ng-{os.getpid()}-{next(_copies)}.so"
    shutil.copyfile(espeakng_loader.get_library_path(), copy)
    try:
        library = _Library(copy)
        try:
            wave, events = library.synthesize(text, voice, rate, pitch, pitch_range)
            return wave, events, library.sample_rate
        finally:
            library.close()
    finally:
        copy.unlink(missing_ok=True)


def events_to_segments(events: list[tuple[str, int]], wave: np.ndarray, *,
                       pause_level: float = 0.1) -> list[tuple[str, int, int]]:
    """Phoneme events (IPA name, start sample) -> segments; a phone lasts until the next event.

    Unnamed events are pause phonemes, but espeak-ng also emits short ones
    between words while the previous vowel is still sounding: such a segment is
    ``sil`` only if its RMS is below ``pause_level`` times the utterance's RMS,
    otherwise the previous phone absorbs it (as it does unmappable phones).
    """
    length = len(wave)
    signal = wave.astype(np.float64)
    level = float(np.sqrt(np.mean(signal ** 2))) if length else 0.0
    segments: list[tuple[str, int, int]] = []
    for (name, start), (_, end) in zip(events, events[1:] + [("", length)]):
        start, end = max(0, min(start, length)), max(0, min(end, length))
        if end <= start:
            continue
        phone = to_corpus_phone(name) if name else SILENCE
        if phone == SILENCE and segments and segments[-1][0] != SILENCE:
            rms = float(np.sqrt(np.mean(signal[start:end] ** 2)))
            if rms >= pause_level * level:
                phone = None
        if phone is None:  # the previous phone absorbs this stretch
            if segments:
                segments[-1] = (segments[-1][0], segments[-1][1], end)
            continue
        segments.append((phone, start, end))
    return segments


class EspeakEngine(Engine):
    name = "espeak"

    @classmethod
    def available(cls) -> bool:
        try:
            import espeakng_loader

            return Path(espeakng_loader.get_library_path()).is_file() and _data_path().is_dir()
        except (ImportError, RuntimeError):
            return False

    @classmethod
    def voices(cls) -> list[Voice]:
        variant_dir = _data_path() / "voices" / "!v"
        variants = sorted(p.name for p in variant_dir.iterdir()
                          if p.is_file() and p.name not in EXCLUDED_VARIANTS and " " not in p.name)
        langs = {p.name.lower() for p in (_data_path() / "lang" / "gmw").iterdir()}
        accents = [a for a in ACCENTS if a in langs]
        voices = []
        for variant in [""] + variants:
            for accent in accents:
                spec = f"{accent}+{variant}" if variant else accent
                voices.append(Voice(engine="espeak", name=spec,
                                    speaker=f"espeak-{variant or 'default'}"))
        return voices

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"espeakng-loader {version('espeakng-loader')}"
        except PackageNotFoundError:
            return "espeakng-loader"

    @classmethod
    def install_hint(cls) -> str:
        return "Install the `espeakng-loader` wheel (pip install espeakng-loader)."

    def render(self, jobs: Sequence[SynthJob]) -> list[Rendering | None]:
        out: list[Rendering | None] = []
        for job in jobs:
            rate = int(round(DEFAULT_RATE_WPM * job.rate))
            pitch = int(round(25 + 50 * job.pitch))
            pitch_range = int(round(30 + 50 * ((7.0 * job.pitch) % 1.0)))  # decorrelated from pitch
            try:
                wave, events, sample_rate = synthesize(job.text + ".", job.voice.name, rate, pitch,
                                                       pitch_range)
            except RuntimeError:
                out.append(None)
                continue
            if len(wave) == 0:
                out.append(None)
                continue
            segments = events_to_segments(events, wave)
            out.append(Rendering(samples=wave.astype(np.float32) / 32768.0,
                                 sample_rate=sample_rate, segments=segments))
        return out


ENGINE = EspeakEngine
