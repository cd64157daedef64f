"""Which voices each split may use: valid and test hold out whole speakers.

Speakers are partitioned per family (espeak-ng variants; the recorded-voice
engines flite/festival/mbrola, where one speaker can appear in several
engines): about 15 % each to valid and test (at least one each when a family
has three or more speakers), the rest to train. The unlabeled split uses
the train speakers, so no held-out voice is ever heard in training.
"""

from __future__ import annotations

import random
from typing import Sequence

from .engines import Voice

EVAL_FRACTION = 0.15


def family(voice: Voice) -> str:
    return "espeak" if voice.engine == "espeak" else "recorded"


def partition_speakers(voices: Sequence[Voice], seed: int) -> dict[str, list[str]]:
    """Speakers per split role: ``{"train": [...], "valid": [...], "test": [...]}``."""
    roles: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for fam in sorted({family(v) for v in voices}):
        speakers = sorted({v.speaker for v in voices if family(v) == fam})
        random.Random(f"demo-voices/{seed}/{fam}").shuffle(speakers)
        n_eval = max(1, round(EVAL_FRACTION * len(speakers))) if len(speakers) >= 3 else 0
        roles["valid"] += speakers[:n_eval]
        roles["test"] += speakers[n_eval:2 * n_eval]
        roles["train"] += speakers[2 * n_eval:]
    return {role: sorted(s) for role, s in roles.items()}


def voices_by_role(voices: Sequence[Voice], seed: int) -> dict[str, list[Voice]]:
    """Voices per split role (train / valid / test) after :func:`partition_speakers`."""
    speakers = partition_speakers(voices, seed)
    return {role: [v for v in voices if v.speaker in members] for role, members in speakers.items()}
