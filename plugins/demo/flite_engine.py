"""flite (Debian ``flite``): CMU clunits/diphone voices, one process per utterance.

``-psdur`` prints ``phone:end_time`` pairs (ARPAbet, seconds) in the same call
that writes the WAV, so timings need no second pass.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from .audio import read_wav
from .engines import Engine, Rendering, SynthJob, Voice
from .phones import map_arpabet

#: Built-in 16 kHz voices and the speakers behind them (kal = Kevin Lenzo, as festival's kal).
VOICES = {"kal16": "kal", "awb": "awb", "rms": "rms", "slt": "slt"}


def parse_psdur(text: str, sample_rate: int) -> list[tuple[str, int, int]]:
    """``pau:0.184 dh:0.236 ...`` -> corpus-phone segments in samples."""
    pairs = []
    for token in text.split():
        phone, _, end = token.rpartition(":")
        try:
            pairs.append((phone, float(end)))
        except ValueError:
            continue
    mapped = map_arpabet([p for p, _ in pairs])
    segments, i, start = [], 0, 0.0
    for phone, covered in mapped:
        end = pairs[i + covered - 1][1]
        segments.append((phone, int(round(start * sample_rate)), int(round(end * sample_rate))))
        start, i = end, i + covered
    return segments


class FliteEngine(Engine):
    name = "flite"

    @classmethod
    def available(cls) -> bool:
        return shutil.which("flite") is not None and bool(cls.voices())

    @classmethod
    def voices(cls) -> list[Voice]:
        try:
            listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        present = set(listing.replace(":", " ").split())
        return [Voice(engine="flite", name=v, speaker=s) for v, s in VOICES.items() if v in present]

    @classmethod
    def version(cls) -> str:
        try:
            text = subprocess.run(["flite", "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return "flite"
        return next((w for w in text.split() if w.startswith("flite-")), "flite")

    @classmethod
    def install_hint(cls) -> str:
        return "flite comes from Debian main: `apt-get install flite` (or `w2vrun install-engines`)."

    def render(self, jobs: Sequence[SynthJob]) -> list[Rendering | None]:
        out: list[Rendering | None] = []
        with tempfile.TemporaryDirectory(prefix="w2v-flite-") as tmp:
            wav = Path(tmp) / "out.wav"
            for job in jobs:
                command = ["flite", "-voice", job.voice.name, "--setf",
                           f"duration_stretch={1.0 / job.rate:.4f}", "-psdur", "-t", job.text,
                           "-o", str(wav)]
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
                    samples, rate = read_wav(wav)
                except (OSError, subprocess.SubprocessError, RuntimeError):
                    out.append(None)
                    continue
                if done.returncode != 0 or len(samples) == 0:
                    out.append(None)
                    continue
                out.append(Rendering(samples=samples, sample_rate=rate,
                                     segments=parse_psdur(done.stdout, rate)))
                wav.unlink()
        return out


ENGINE = FliteEngine
