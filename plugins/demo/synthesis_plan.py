"""Deciding what each utterance is, and synthesising splits to a target duration.

Utterance ``k`` of a split is a pure function of (seed, split, k): its
sentence is the split's k-th sentence and its engine, voice, speaking rate,
pitch, speed perturbation and level are drawn from a generator seeded with
``"{seed}/{split}/{k}"``. Splits are synthesised in rounds, each round
planning slightly more than the estimated remaining need; a split keeps its
utterances in order up to the first one that reaches the target, and drops
the rest. The result depends on the seed only, not on the number of workers
or on round sizes.
"""

from __future__ import annotations

import math
import random
from concurrent.futures import Executor
from pathlib import Path
from typing import Callable, Sequence

import attrs

from .alignment import Segment
from .audio import SAMPLE_RATE
from .engines import ENGINE_ORDER, SynthJob, Voice
from .synth_worker import synthesize_batch

#: Speaking-rate factor (engine-native), speed perturbation (resampling) and peak level ranges.
RATE_RANGE = (0.8, 1.15)
SPEED_RANGE = (0.9, 1.1)
PEAK_RANGE = (0.3, 0.95)
#: Jobs per worker task, per engine (festival pays a process start per task).
BATCH_SIZE = {"espeak": 24, "flite": 12, "festival": 24, "mbrola": 12}
#: First guess of seconds per word (espeak-ng at 175 words/min, plus leading/trailing pauses).
SECONDS_PER_WORD = 0.36
SECONDS_PER_UTTERANCE = 0.6


@attrs.define(kw_only=True)
class Utterance:
    key: str
    split: str
    text: str
    voice: Voice
    rate: float
    pitch: float
    speed: float
    path: str  # relative to the corpus root
    num_samples: int = 0
    segments: list[Segment] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class SplitPlan:
    """One split to synthesise: its sentences (in order), voices and target duration."""

    name: str
    sentences: Sequence[str]
    voices: Sequence[Voice]
    target_seconds: float
    utterances: list[Utterance] = attrs.field(factory=list)
    failed: list[str] = attrs.field(factory=list)
    next_index: int = 0
    done: bool = False

    @property
    def seconds(self) -> float:
        return sum(u.num_samples for u in self.utterances) / SAMPLE_RATE

    @property
    def exhausted(self) -> bool:
        return self.next_index >= len(self.sentences)


def plan_utterance(seed: int, split: SplitPlan, k: int) -> Utterance:
    """Utterance ``k`` of ``split``: sentence k, and voice/rate/pitch/speed drawn from (seed, split, k)."""
    rng = random.Random(f"{seed}/{split.name}/{k}")
    engines = sorted({v.engine for v in split.voices}, key=ENGINE_ORDER.index)
    engine = engines[rng.randrange(len(engines))]
    choices = [v for v in split.voices if v.engine == engine]
    voice = choices[rng.randrange(len(choices))]
    key = f"{split.name}-{k:05d}"
    return Utterance(key=key, split=split.name, text=split.sentences[k], voice=voice,
                     rate=rng.uniform(*RATE_RANGE), pitch=rng.random(), speed=rng.uniform(*SPEED_RANGE),
                     path=f"audio/{split.name}/{key}.wav")


def _peak(seed: int, key: str) -> float:
    return random.Random(f"{seed}/{key}/peak").uniform(*PEAK_RANGE)


def _estimate(text: str, seconds_per_word: float) -> float:
    return SECONDS_PER_UTTERANCE + seconds_per_word * (text.count(" ") + 1)


def _batches(jobs: list[SynthJob]) -> list[tuple[str, list[SynthJob]]]:
    """Jobs grouped per engine (festival by voice, to switch voices rarely), then cut in batches."""
    out = []
    for engine in ENGINE_ORDER:
        mine = [j for j in jobs if j.voice.engine == engine]
        if engine == "festival":
            mine.sort(key=lambda j: j.voice.name)
        size = BATCH_SIZE[engine]
        out += [(engine, mine[i:i + size]) for i in range(0, len(mine), size)]
    # Slow engines first, so the last tasks to finish are short ones.
    out.sort(key=lambda b: b[0] != "festival")
    return out


def synthesize_splits(splits: Sequence[SplitPlan], *, seed: int, root: Path, executor: Executor,
                      progress: Callable[[str], None] | None = None) -> None:
    """Synthesise every split to its target duration; fills ``split.utterances``."""
    seconds_per_word = SECONDS_PER_WORD
    for split in splits:
        split.done = split.target_seconds <= 0 or not split.voices or not split.sentences
    round_number = 0
    while not all(s.done for s in splits):
        round_number += 1
        planned: dict[str, list[Utterance]] = {}
        for split in splits:
            if split.done:
                continue
            need = 1.1 * (split.target_seconds - split.seconds) + 1.0
            batch: list[Utterance] = []
            estimate = 0.0
            while estimate < need and split.next_index + len(batch) < len(split.sentences):
                utt = plan_utterance(seed, split, split.next_index + len(batch))
                batch.append(utt)
                estimate += _estimate(utt.text, seconds_per_word)
            planned[split.name] = batch
        jobs = [SynthJob(key=u.key, text=u.text.lower(), voice=u.voice, rate=u.rate, pitch=u.pitch,
                         speed=u.speed, peak=_peak(seed, u.key), path=str(root / u.path))
                for batch in planned.values() for u in batch]
        results = _run(jobs, executor)
        spoken_words = spoken_seconds = 0.0
        for split in splits:
            for utt in planned.get(split.name, []):
                split.next_index += 1
                result = results.get(utt.key)
                if split.done:  # target reached earlier in this round: drop the surplus
                    if result is not None:
                        (root / utt.path).unlink(missing_ok=True)
                    continue
                if result is None:
                    split.failed.append(utt.key)
                    continue
                utt.num_samples, utt.segments = result
                split.utterances.append(utt)
                spoken_words += utt.text.count(" ") + 1
                spoken_seconds += utt.num_samples / SAMPLE_RATE - SECONDS_PER_UTTERANCE
                split.done = split.seconds >= split.target_seconds
            if split.exhausted:
                split.done = True
        if spoken_words:
            seconds_per_word = max(0.1, spoken_seconds / spoken_words)
        if progress:
            summary = ", ".join(f"{s.name} {s.seconds / 60:.1f}/{s.target_seconds / 60:.1f} min"
                                for s in splits)
            progress(f"round {round_number}: {len(jobs)} utterances synthesised; {summary}")
        if round_number > 50:
            raise RuntimeError("demo corpus synthesis does not converge")


def _run(jobs: list[SynthJob], executor: Executor) -> dict[str, tuple[int, list[Segment]] | None]:
    futures = [executor.submit(synthesize_batch, engine, batch) for engine, batch in _batches(jobs)]
    results: dict[str, tuple[int, list[Segment]] | None] = {j.key: None for j in jobs}
    for future in futures:
        for item in future.result():
            if item is not None:
                key, count, segments = item
                results[key] = (count, segments)
    return results


def sentences_needed(target_seconds: float, min_seconds: float = 1.2) -> int:
    """Sentences to reserve for a split: enough even if every utterance is short."""
    return 0 if target_seconds <= 0 else int(math.ceil(target_seconds / min_seconds)) + 8
