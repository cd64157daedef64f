"""Work done in the builder's worker processes: synthesis batches and G2P.

Both load the ``espeakng-loader`` library, which must stay out of the parent
process (see :mod:`.espeak_engine`). Each function is a pure function of its
arguments, so the corpus does not depend on how work is split among workers.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from .alignment import Segment, normalize_segments, rescale_segments
from .audio import SAMPLE_RATE, resample, write_wav
from .engines import Engine, Rendering, SynthJob, engine_class

#: A rendering quieter than this (peak) counts as failed.
SILENT_PEAK = 1e-3


@functools.lru_cache(maxsize=None)
def _engine(name: str) -> Engine:
    return engine_class(name)()


def finish(job: SynthJob, rendering: Rendering) -> tuple[int, list[Segment]] | None:
    """Speed-perturb, resample to 16 kHz, write the WAV; returns (samples, alignment)."""
    samples = np.asarray(rendering.samples, dtype=np.float32)
    if len(samples) == 0 or float(np.max(np.abs(samples))) < SILENT_PEAK:
        return None
    native = normalize_segments(rendering.segments, len(samples))
    source_rate = rendering.sample_rate * job.speed
    wave = samples if source_rate == SAMPLE_RATE else resample(samples, source_rate, SAMPLE_RATE)
    count = write_wav(Path(job.path), wave, peak=job.peak)
    return count, rescale_segments(native, SAMPLE_RATE / source_rate, count)


def synthesize_batch(engine: str, jobs: Sequence[SynthJob]) -> list[tuple[str, int, list[Segment]] | None]:
    """Render and write a batch of one engine's jobs: (key, samples, alignment) or None each."""
    renderings = _engine(engine).render(jobs)
    out = []
    for job, rendering in zip(jobs, renderings):
        done = finish(job, rendering) if rendering is not None else None
        out.append(None if done is None else (job.key, done[0], done[1]))
    return out


def phonemize(transcripts: Sequence[str]) -> tuple[list[list[str]], dict[str, int], str]:
    """G2P of upper-case transcripts: (phones per transcript, dropped symbols, espeak version)."""
    from .g2p import G2P

    g2p = G2P()
    phones = g2p(list(transcripts))
    return phones, dict(g2p.dropped), g2p.version


def engine_versions(engines: Sequence[str]) -> dict[str, str]:
    return {name: engine_class(name).version() for name in engines}
