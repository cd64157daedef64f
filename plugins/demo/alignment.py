"""Frame-level phone alignments of the labeled splits.

File format (``<split>.align.tsv``): one line per utterance, in manifest
order, no header. A line is space-separated segments ``PHONE,START,END``
with START/END in samples at 16 kHz, END exclusive. The segments of a line
are contiguous, start at 0 and end at the utterance's sample count; pauses
are ``sil``. Phones are those of ``dict.phn.txt`` (IPA, no stress).

The phones are the ones the engine reports having spoken (espeak-ng phoneme
events, flite ``-psdur``, festival segments, the mbrola ``.pho`` file),
mapped to the corpus phone set. They can differ slightly from ``.phn``,
which is the ``en-us`` G2P of the transcript: that is what the audio of a
British espeak accent or of flite's own lexicon really contains.

:func:`read_alignments` and :func:`frame_labels` read them back, e.g.
``frame_labels(segments, num_frames, hop=320)`` for 50 Hz wav2vec 2.0 frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .phones import SILENCE

Segment = tuple[str, int, int]  # (phone, start sample, end sample), end exclusive


def normalize_segments(segments: Sequence[Segment], length: int) -> list[Segment]:
    """Make engine segments a contiguous cover of ``[0, length)``.

    Segments are sorted and clipped to the signal (flite's diphone voices end
    the wave before the final pause does); gaps become ``sil``, neighbouring
    ``sil`` merge, empty segments vanish.
    """
    if length <= 0:
        return []
    segs = sorted(((p, int(s), int(e)) for p, s, e in segments if e > s), key=lambda x: (x[1], x[2]))
    out: list[Segment] = []
    cursor = 0
    for phone, start, end in segs:
        start, end = max(start, cursor), min(end, length)
        if end <= start:
            continue
        if start > cursor:
            _append(out, SILENCE, cursor, start)
        _append(out, phone, start, end)
        cursor = end
    if cursor < length:
        _append(out, SILENCE, cursor, length)
    return out


def _append(out: list[Segment], phone: str, start: int, end: int) -> None:
    if out and out[-1][0] == SILENCE and phone == SILENCE:
        out[-1] = (SILENCE, out[-1][1], end)
    else:
        out.append((phone, start, end))


def rescale_segments(segments: Sequence[Segment], factor: float, length: int) -> list[Segment]:
    """Times multiplied by ``factor`` (a rate change), rounded, re-covering ``[0, length)``."""
    scaled = [(p, int(round(s * factor)), int(round(e * factor))) for p, s, e in segments]
    if scaled:
        phone, start, _ = scaled[-1]
        scaled[-1] = (phone, start, length)
    return normalize_segments(scaled, length)


def format_segments(segments: Sequence[Segment]) -> str:
    return " ".join(f"{p},{s},{e}" for p, s, e in segments)


def parse_segments(line: str) -> list[Segment]:
    out = []
    for token in line.split():
        phone, start, end = token.rsplit(",", 2)
        out.append((phone, int(start), int(end)))
    return out


def read_alignments(path: str | Path) -> list[list[Segment]]:
    """All utterances of a ``<split>.align.tsv`` file, in manifest order."""
    with open(path, encoding="utf-8") as lines:
        return [parse_segments(line) for line in lines]


def frame_labels(segments: Sequence[Segment], num_frames: int, *, hop: int = 160,
                 offset: int | None = None) -> list[str]:
    """The phone at the centre of each frame.

    Args:
        segments: one utterance's alignment.
        num_frames: frames wanted (e.g. a model's output length).
        hop: samples per frame (160 = 100 Hz, 320 = wav2vec 2.0's 50 Hz).
        offset: sample position of frame 0's centre (default ``hop // 2``).
    """
    if not segments:
        return [SILENCE] * num_frames
    centres = (hop // 2 if offset is None else offset) + hop * np.arange(num_frames)
    ends = np.array([e for _, _, e in segments])
    index = np.minimum(np.searchsorted(ends, centres, side="right"), len(segments) - 1)
    return [segments[i][0] for i in index]
