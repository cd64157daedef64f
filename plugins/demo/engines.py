"""Speech synthesis engines: what a voice, a job and an engine's output are.

An engine turns text into samples at its native rate plus the phones it
spoke with their times. Four exist (:data:`ENGINE_MODULES`):

- ``espeak``: libespeak-ng of the ``espeakng-loader`` wheel, in-process via
  ctypes; always available (the pip-only baseline). Accents x voice variants.
- ``flite``, ``festival``: Debian main packages, used when installed.
- ``mbrola``: the MBROLA diphone voices driven by Debian's ``espeak-ng``;
  these live in Debian contrib/non-free and are used only if the user has
  installed them (never enabled automatically).
"""

from __future__ import annotations

import abc
import importlib
from typing import Sequence

import attrs
import numpy as np

from w2v.errors import UserError

from .alignment import Segment


@attrs.frozen(kw_only=True)
class Voice:
    """One voice of one engine.

    Attributes:
        engine: engine name (``espeak``, ``flite``, ``festival``, ``mbrola``).
        name: the engine's voice spec (``en-us+m3``, ``slt``, ``kal_diphone``, ``mb-us1``).
        speaker: the speaker behind it, shared across engines that use the same
            recordings (flite ``kal16`` and festival ``kal_diphone`` are both ``kal``);
            held-out splits hold out speakers.
    """

    engine: str
    name: str
    speaker: str

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


@attrs.frozen(kw_only=True)
class SynthJob:
    """One utterance to synthesise and write.

    Attributes:
        key: utterance id (``train-00012``).
        text: normalised transcript, lower case.
        voice: the voice.
        rate: speaking-rate factor for the engine (1.0 = its default).
        pitch: pitch setting in [0, 1] for engines that have one (0.5 = default).
        speed: speed perturbation by resampling (changes tempo and pitch together).
        peak: peak amplitude of the written file.
        path: absolute output path of the 16 kHz WAV.
    """

    key: str
    text: str
    voice: Voice
    rate: float = 1.0
    pitch: float = 0.5
    speed: float = 1.0
    peak: float = 0.9
    path: str


@attrs.define(kw_only=True)
class Rendering:
    """An engine's output: [S] float samples at ``sample_rate`` and the spoken phones
    (corpus phone set, times in those samples; need not cover the whole signal)."""

    samples: np.ndarray
    sample_rate: int
    segments: list[Segment]


class Engine(abc.ABC):
    """A synthesis engine. Instances live in worker processes."""

    name: str = ""

    @classmethod
    @abc.abstractmethod
    def available(cls) -> bool:
        """Whether the engine can run on this machine."""

    @classmethod
    @abc.abstractmethod
    def voices(cls) -> list[Voice]:
        """The voices to draw from (deterministic order)."""

    @classmethod
    def version(cls) -> str:
        return ""

    @classmethod
    def install_hint(cls) -> str:
        return ""

    @abc.abstractmethod
    def render(self, jobs: Sequence[SynthJob]) -> list[Rendering | None]:
        """Synthesise a batch; None for a job that failed."""


ENGINE_MODULES = {"espeak": ".espeak_engine", "flite": ".flite_engine",
                  "festival": ".festival_engine", "mbrola": ".mbrola_engine"}
ENGINE_ALIASES = {"espeak-wheel": "espeak", "espeak-ng": "espeak", "espeakng": "espeak"}
#: Order of engines in corpus ids.
ENGINE_ORDER = ("espeak", "flite", "festival", "mbrola")


def engine_class(name: str) -> type[Engine]:
    module = importlib.import_module(ENGINE_MODULES[name], __package__)
    return module.ENGINE


def canonical_engine_name(name: str) -> str:
    name = ENGINE_ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in ENGINE_MODULES:
        from w2v.errors import did_you_mean

        raise UserError(f"unknown synthesis engine `{name}`.",
                        hint=did_you_mean(name, list(ENGINE_MODULES) + list(ENGINE_ALIASES), "engines"))
    return name


def available_engines() -> list[str]:
    return [name for name in ENGINE_ORDER if engine_class(name).available()]


def resolve_engines(requested: Sequence[str] | None) -> list[str]:
    """The engines to use: all available ones by default, else the requested ones (which
    must be available)."""
    if requested is None:
        return available_engines()
    names = []
    for name in requested:
        name = canonical_engine_name(name)
        if name not in names:
            names.append(name)
    missing = [n for n in names if not engine_class(n).available()]
    if missing:
        hints = " ".join(engine_class(n).install_hint() for n in missing)
        raise UserError(f"synthesis engine(s) {', '.join(missing)} not available on this machine.",
                        hint=hints + " Available: " + (", ".join(available_engines()) or "none") + ".")
    if not names:
        raise UserError("no synthesis engine requested.", hint="Use e.g. --engines espeak.")
    return sorted(names, key=ENGINE_ORDER.index)
