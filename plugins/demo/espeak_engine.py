"""espeak-ng through the ``espeakng-loader`` wheel (ctypes, synchronous mode).

``espeak_Synth`` in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode calls back with chunks
of 22.05 kHz samples and events; with ``espeakINITIALIZE_PHONEME_EVENTS |
espeakINITIALIZE_PHONEME_IPA`` every phoneme arrives as an event holding its
IPA name (stress marks included) and its sample position. A phone lasts
until the next event; the unnamed events are pauses.

Loading the wheel's library into a process shadows Debian's
``libespeak-ng.so.1`` there (same soname), so only worker processes load it.
"""

from __future__ import annotations

import ctypes
import functools
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
    """The wheel's libespeak-ng, initialised once per process."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        options = _INITIALIZE_DONT_EXIT | _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA
        self.sample_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(_data_path()).encode(), options)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

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
def _library() -> _Library:
    return _Library()


def events_to_segments(events: list[tuple[str, int]], length: int) -> list[tuple[str, int, int]]:
    """Phoneme events (IPA name, start sample) -> segments; a phone lasts until the next event."""
    segments = []
    for (name, start), (_, end) in zip(events, events[1:] + [("", length)]):
        phone = to_corpus_phone(name) if name else SILENCE
        if phone is None:  # unmappable: the previous phone absorbs its time
            if segments:
                segments[-1] = (segments[-1][0], segments[-1][1], end)
            continue
        if end > start:
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
        lib = _library()
        out: list[Rendering | None] = []
        for job in jobs:
            rate = int(round(DEFAULT_RATE_WPM * job.rate))
            pitch = int(round(25 + 50 * job.pitch))
            pitch_range = int(round(30 + 50 * job.pitch))
            try:
                wave, events = lib.synthesize(job.text + ".", job.voice.name, rate, pitch, pitch_range)
            except RuntimeError:
                out.append(None)
                continue
            if len(wave) == 0:
                out.append(None)
                continue
            segments = events_to_segments(events, len(wave))
            out.append(Rendering(samples=wave.astype(np.float32) / 32768.0,
                                 sample_rate=lib.sample_rate, segments=segments))
        return out


ENGINE = EspeakEngine
