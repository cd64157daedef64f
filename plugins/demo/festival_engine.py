"""festival (Debian ``festival`` + ``festvox-*`` voices), batched: one ``festival -b``
script per batch (a process costs about 0.3 s, an utterance about 40 ms).

``utt.save.segs`` writes each segment's end time (seconds) and phone
(festival's radio phone set, ARPAbet-like).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from .audio import read_wav
from .engines import Engine, Rendering, SynthJob, Voice
from .phones import map_arpabet

VOICE_ROOT = Path("/usr/share/festival/voices")
#: Main-archive voices and their speakers (kal and slt are the same people as flite's).
KNOWN_VOICES = {"kal_diphone": "kal", "ked_diphone": "ked", "cmu_us_slt_arctic_hts": "slt",
                "cmu_us_awb_arctic_hts": "awb", "cmu_us_rms_arctic_hts": "rms",
                "cmu_us_bdl_arctic_hts": "bdl", "cmu_us_jmk_arctic_hts": "jmk"}


def parse_segs(text: str, sample_rate: int) -> list[tuple[str, int, int]]:
    """The ``utt.save.segs`` format (``#`` header, then ``end 100 phone`` lines) -> segments."""
    pairs = []
    body = text.split("#", 1)[-1]
    for line in body.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            try:
                pairs.append((fields[2], float(fields[0])))
            except ValueError:
                continue
    mapped = map_arpabet([p for p, _ in pairs])
    segments, i, start = [], 0, 0.0
    for phone, covered in mapped:
        end = pairs[i + covered - 1][1]
        segments.append((phone, int(round(start * sample_rate)), int(round(end * sample_rate))))
        start, i = end, i + covered
    return segments


class FestivalEngine(Engine):
    name = "festival"

    @classmethod
    def available(cls) -> bool:
        return shutil.which("festival") is not None and bool(cls.voices())

    @classmethod
    def voices(cls) -> list[Voice]:
        found = []
        if VOICE_ROOT.is_dir():
            for group in sorted(VOICE_ROOT.iterdir()):
                if group.is_dir():
                    found.extend(p.name for p in sorted(group.iterdir())
                                 if p.is_dir() and p.name in KNOWN_VOICES)
        return [Voice(engine="festival", name=v, speaker=KNOWN_VOICES[v]) for v in sorted(found)]

    @classmethod
    def version(cls) -> str:
        try:
            text = subprocess.run(["festival", "--version"], capture_output=True, text=True,
                                  timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return "festival"
        found = re.search(r"\d+\.\d+(\.\d+)?", text)
        return f"festival {found.group(0)}" if found else "festival"

    @classmethod
    def install_hint(cls) -> str:
        return ("festival comes from Debian main: `apt-get install festival festvox-kallpc16k "
                "festvox-kdlpc16k festvox-us-slt-hts` (or `w2vrun install-engines`).")

    def render(self, jobs: Sequence[SynthJob]) -> list[Rendering | None]:
        out: list[Rendering | None] = []
        with tempfile.TemporaryDirectory(prefix="w2v-festival-") as tmp:
            lines, current = [], None
            for i, job in enumerate(jobs):
                if job.voice.name != current:
                    lines.append(f"(voice_{job.voice.name})")
                    current = job.voice.name
                lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / job.rate:.4f})")
                lines.append(f'(set! u (utt.synth (Utterance Text "{job.text}")))')
                lines.append(f'(utt.save.wave u "{tmp}/{i}.wav" \'riff)')
                lines.append(f'(utt.save.segs u "{tmp}/{i}.segs")')
            script = Path(tmp) / "batch.scm"
            script.write_text("\n".join(lines) + "\n")
            try:
                subprocess.run(["festival", "-b", str(script)], capture_output=True, timeout=600)
            except (OSError, subprocess.SubprocessError):
                return [None] * len(jobs)
            for i in range(len(jobs)):
                wav, segs = Path(tmp) / f"{i}.wav", Path(tmp) / f"{i}.segs"
                try:
                    samples, rate = read_wav(wav)
                    segments = parse_segs(segs.read_text(), rate)
                except (OSError, RuntimeError):
                    out.append(None)
                    continue
                out.append(Rendering(samples=samples, sample_rate=rate, segments=segments)
                           if len(samples) else None)
        return out


ENGINE = FestivalEngine
