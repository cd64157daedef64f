"""MBROLA diphone voices driven by Debian's ``espeak-ng`` (``-v mb-us1`` ...).

The ``mbrola`` program is in Debian contrib and its voices in non-free: they are
used only when the user has installed them (nothing here adds package sources),
and audio made with them must not be redistributed.

Two steps per utterance: ``espeak-ng -q --pho`` writes the phone/duration
(ms) file, ``mbrola VOICE in.pho out.wav`` renders exactly those durations, so
the ``.pho`` file is the alignment.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from .audio import read_wav
from .engines import Engine, Rendering, SynthJob, Voice
from .phones import map_sampa

MBROLA_ROOT = Path("/usr/share/mbrola")
VOICES = ("us1", "us2", "us3", "en1")


def parse_pho(text: str, sample_rate: int) -> list[tuple[str, int, int]]:
    """MBROLA ``.pho`` lines (``phone duration_ms [pos f0 ...]``, ``;`` comments) -> segments."""
    segments, t = [], 0.0
    for line in text.splitlines():
        fields = line.split(";", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            duration = float(fields[1]) / 1000.0
        except ValueError:
            continue
        start = int(round(t * sample_rate))
        t += duration
        segments.append((map_sampa(fields[0]), start, int(round(t * sample_rate))))
    return segments


def _voice_file(voice: str) -> Path:
    return MBROLA_ROOT / voice / voice


class MbrolaEngine(Engine):
    name = "mbrola"

    @classmethod
    def available(cls) -> bool:
        return (shutil.which("mbrola") is not None and shutil.which("espeak-ng") is not None
                and bool(cls.voices()))

    @classmethod
    def voices(cls) -> list[Voice]:
        return [Voice(engine="mbrola", name=f"mb-{v}", speaker=f"mbrola-{v}")
                for v in VOICES if _voice_file(v).is_file()]

    @classmethod
    def version(cls) -> str:
        try:
            text = subprocess.run(["mbrola", "-h"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return "mbrola"
        words = (text.stdout + text.stderr).split()
        return "mbrola " + next((w for w in words if w[:1].isdigit()), "")

    @classmethod
    def install_hint(cls) -> str:
        return ("The MBROLA voices are in Debian contrib/non-free, which w2v never enables: if you "
                "accept their licence, add those components yourself and `apt-get install mbrola "
                "mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1`.")

    def render(self, jobs: Sequence[SynthJob]) -> list[Rendering | None]:
        out: list[Rendering | None] = []
        with tempfile.TemporaryDirectory(prefix="w2v-mbrola-") as tmp:
            pho, wav = Path(tmp) / "in.pho", Path(tmp) / "out.wav"
            for job in jobs:
                voice = job.voice.name.removeprefix("mb-")
                rate = str(int(round(175 * job.rate)))
                pitch = str(int(round(25 + 50 * job.pitch)))
                try:
                    phones = subprocess.run(["espeak-ng", "-v", job.voice.name, "-s", rate, "-p", pitch,
                                             "-q", "--pho", job.text], capture_output=True, text=True,
                                            timeout=60, check=True).stdout
                    pho.write_text(phones)
                    subprocess.run(["mbrola", "-e", str(_voice_file(voice)), str(pho), str(wav)],
                                   capture_output=True, timeout=60, check=True)
                    samples, sample_rate = read_wav(wav)
                except (OSError, subprocess.SubprocessError, RuntimeError):
                    out.append(None)
                    continue
                out.append(Rendering(samples=samples, sample_rate=sample_rate,
                                     segments=parse_pho(phones, sample_rate)) if len(samples) else None)
        return out


ENGINE = MbrolaEngine
