"""The small real human-speech split, from Debian's ``pocketsphinx-testdata``.

12 utterances, about 42 s, 16 kHz: five LibriVox clips (one female reader,
*Sense and Sensibility*), five playing-card phrases and two command phrases,
with their transcripts. A smoke-test evaluation set, not a benchmark (the
LibriVox transcript keeps the reader's "a more a amiable").
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import numpy as np

POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")
#: Headerless 16 kHz s16le recordings whose content was confirmed by decoding.
RAW_CLIPS = {"goforward.raw": "go forward ten meters", "something.raw": "go somewhere and do something"}


@attrs.frozen(kw_only=True)
class RealClip:
    key: str
    source: str
    speaker: str
    path: Path
    transcript: str  # raw, un-normalised

    def samples(self) -> np.ndarray:
        """[S] int16 samples at 16 kHz."""
        if self.path.suffix == ".raw":
            return np.fromfile(self.path, dtype="<i2")
        import soundfile

        wave, rate = soundfile.read(str(self.path), dtype="int16", always_2d=True)
        if rate != 16000:
            raise ValueError(f"{self.path}: expected 16 kHz, found {rate} Hz")
        return wave[:, 0]


def _transcriptions(path: Path) -> dict[str, str]:
    """Sphinx ``<s> words </s> (id)`` lines -> {id: words}."""
    out = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        match = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^)]+)\)\s*$", line)
        if match:
            out[match.group(2).strip()] = " ".join(match.group(1).split())
    return out


def real_clips(root: Path = POCKETSPHINX_DATA) -> list[RealClip]:
    """The clips present on this machine (empty without ``pocketsphinx-testdata``)."""
    clips: list[RealClip] = []
    librivox = root / "librivox" / "transcription"
    if librivox.is_file():
        for fileid, words in sorted(_transcriptions(librivox).items()):
            wav = root / "librivox" / f"{fileid}.wav"
            if wav.is_file():
                clips.append(RealClip(key=f"real-librivox-{fileid[-4:]}", source="librivox",
                                      speaker="librivox-austen-reader", path=wav, transcript=words))
    cards = root / "cards" / "cards.transcription"
    if cards.is_file():
        for fileid, words in sorted(_transcriptions(cards).items()):
            wav = root / "cards" / f"{fileid}.wav"
            if wav.is_file():
                clips.append(RealClip(key=f"real-cards-{fileid}", source="cards",
                                      speaker="cards", path=wav, transcript=words))
    for name, words in RAW_CLIPS.items():
        if (root / name).is_file():
            clips.append(RealClip(key=f"real-{name.removesuffix('.raw')}", source="pocketsphinx-raw",
                                  speaker="pocketsphinx-commands", path=root / name, transcript=words))
    return clips
