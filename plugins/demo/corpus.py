"""The demo corpus: build it once per machine and size, reuse it afterwards.

``ensure_corpus()`` returns the corpus directory, building it on first use;
``build_corpus()`` (re)builds it. A corpus is built in a temporary sibling
directory, gets its ``DONE`` marker last, and is then renamed into place,
so a half-built corpus is never reused.

The corpus id names everything that changes the content: engines, text
sources, sizes and seed, e.g. ``demo-espeak+flite+festival-twfk-u30-l10-s1``
(``t`` + text sources: ``w`` WordNet, ``f`` fortunes, ``k`` KJV, ``g`` the
built-in grammar). Figures from machines with and without the more natural
engines therefore never share a corpus id. Default location:
``$W2V_CACHE/demo/<id>`` (``W2V_CACHE`` defaults to ``~/.cache/w2v``).

See :mod:`.corpus_files` and :mod:`.alignment` for the file formats, and
``README.txt`` inside a corpus.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import shutil
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import attrs

from w2v.errors import UserError

from .audio import SAMPLE_RATE
from .corpus_files import symbol_counts, write_dictionary, write_lines, write_split
from .corpus_readme import README
from .engines import Voice, engine_class, resolve_engines
from .phones import SILENCE
from .real_speech import real_clips
from .synth_worker import engine_versions, phonemize
from .synthesis_plan import SplitPlan, Utterance, sentences_needed, synthesize_splits
from .text_pools import make_text_pools, text_tag
from .text_sources import available_sources
from .textnorm import letters, normalize_text
from .voices import partition_speakers, voices_by_role

FORMAT_VERSION = 1
DEFAULT_UNPAIRED = 10000
#: Upper bounds of the size arguments.
MAX_MINUTES = 6000.0
MAX_LABELED_MINUTES = 600.0
MAX_UNPAIRED = 200000
LABELED_SPLITS = ("train", "valid", "test")


def cache_root() -> Path:
    """``$W2V_CACHE``, or ``~/.cache/w2v``."""
    return Path(os.environ.get("W2V_CACHE") or Path.home() / ".cache" / "w2v").expanduser()


def _number(x: float) -> str:
    return str(int(x)) if float(x) == int(x) else f"{x:g}"


@attrs.frozen(kw_only=True)
class CorpusSpec:
    """Everything that determines a corpus's content."""

    minutes: float
    labeled_minutes: float
    eval_minutes: float
    unpaired_sentences: int
    seed: int
    engines: tuple[str, ...]
    text_sources: tuple[str, ...]

    @property
    def corpus_id(self) -> str:
        parts = ["demo", "+".join(self.engines), "t" + text_tag(self.text_sources),
                 f"u{_number(self.minutes)}", f"l{_number(self.labeled_minutes)}"]
        if self.eval_minutes != default_eval_minutes(self.labeled_minutes):
            parts.append(f"e{_number(self.eval_minutes)}")
        if self.unpaired_sentences != DEFAULT_UNPAIRED:
            parts.append(f"p{self.unpaired_sentences}")
        parts.append(f"s{self.seed}")
        return "-".join(parts)


def default_eval_minutes(labeled_minutes: float) -> float:
    """valid and test are each a fifth of the labeled train duration by default."""
    return round(labeled_minutes / 5.0, 4)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise UserError(f"`{name}` must be between {low:g} and {high:g}, found {value:g}.")


def make_spec(minutes: float = 30, labeled_minutes: float = 10, seed: int = 1,
              engines: Sequence[str] | None = None, *, eval_minutes: float | None = None,
              unpaired_sentences: int | None = None) -> CorpusSpec:
    """Validate the sizes and resolve the engines and text sources of this machine."""
    _check_range("minutes", minutes, 0, MAX_MINUTES)
    _check_range("labeled_minutes", labeled_minutes, 0, MAX_LABELED_MINUTES)
    eval_minutes = default_eval_minutes(labeled_minutes) if eval_minutes is None else eval_minutes
    _check_range("eval_minutes", eval_minutes, 0, MAX_LABELED_MINUTES)
    unpaired = DEFAULT_UNPAIRED if unpaired_sentences is None else int(unpaired_sentences)
    _check_range("unpaired_sentences", unpaired, 0, MAX_UNPAIRED)
    if int(seed) != seed or seed < 0:
        raise UserError(f"`seed` must be a non-negative integer, found {seed!r}.")
    return CorpusSpec(minutes=float(minutes), labeled_minutes=float(labeled_minutes),
                      eval_minutes=float(eval_minutes), unpaired_sentences=unpaired, seed=int(seed),
                      engines=tuple(resolve_engines(engines)), text_sources=tuple(available_sources()))


def corpus_path(spec: CorpusSpec, dest: str | os.PathLike | None = None) -> Path:
    if dest is not None:
        return Path(dest).expanduser().absolute()
    return (cache_root() / "demo" / spec.corpus_id).absolute()


def is_complete(path: Path) -> bool:
    return (path / "DONE").is_file() and (path / "meta.json").is_file()


def ensure_corpus(dest: str | os.PathLike | None = None, minutes: float = 30,
                  labeled_minutes: float = 10, seed: int = 1, engines: Sequence[str] | None = None,
                  *, eval_minutes: float | None = None, unpaired_sentences: int | None = None,
                  workers: int = 2, real: bool = True,
                  progress: Callable[[str], None] | None = None) -> Path:
    """The corpus directory for these settings, built first if missing.

    Args:
        dest: corpus directory (default ``$W2V_CACHE/demo/<corpus id>``).
        minutes: unlabeled (pretraining) audio, minutes.
        labeled_minutes: labeled train audio, minutes.
        seed: everything random (sentences, voices, perturbations) derives from it.
        engines: engine names (``espeak`` — alias ``espeak-wheel`` —, ``flite``,
            ``festival``, ``mbrola``); default all available.
        eval_minutes: valid and test audio, minutes each (default ``labeled_minutes / 5``).
        unpaired_sentences: phonemised unpaired text sentences (default 10000).
        workers: synthesis processes.
        real: add the real-speech split where ``pocketsphinx-testdata`` is installed.
        progress: called with one-line progress messages.
    """
    spec = make_spec(minutes, labeled_minutes, seed, engines, eval_minutes=eval_minutes,
                     unpaired_sentences=unpaired_sentences)
    path = corpus_path(spec, dest)
    if is_complete(path):
        found = json.loads((path / "meta.json").read_text()).get("corpus_id")
        if found != spec.corpus_id:
            raise UserError(f"{path} holds the demo corpus `{found}`, not the requested `{spec.corpus_id}`.",
                            hint="Choose another --dest, or rebuild it there with --force.")
        return path
    return _build(spec, path, workers=workers, real=real, progress=progress, replace=False)


def build_corpus(dest: str | os.PathLike | None = None, minutes: float = 30,
                 labeled_minutes: float = 10, seed: int = 1, engines: Sequence[str] | None = None,
                 *, eval_minutes: float | None = None, unpaired_sentences: int | None = None,
                 workers: int = 2, real: bool = True,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Build the corpus (replacing one already at the destination); arguments as :func:`ensure_corpus`."""
    spec = make_spec(minutes, labeled_minutes, seed, engines, eval_minutes=eval_minutes,
                     unpaired_sentences=unpaired_sentences)
    return _build(spec, corpus_path(spec, dest), workers=workers, real=real, progress=progress,
                  replace=True)


# ------------------------------------------------------------------ building
def _build(spec: CorpusSpec, path: Path, *, workers: int, real: bool,
           progress: Callable[[str], None] | None, replace: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _build_into(tmp, path, spec, workers=workers, real=real, progress=progress)
        if not replace and is_complete(path):  # someone else finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return path
        _publish(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporary build directories of processes that no longer run."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        try:
            pid = int(stale.name.rsplit(".tmp-", 1)[1].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def _publish(tmp: Path, path: Path) -> None:
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(path, old)
    os.rename(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _executor(workers: int) -> ProcessPoolExecutor:
    # spawn: workers load the espeakng-loader library, which must not leak into (or be
    # inherited from) the calling process, and must not inherit its thread pools.
    return ProcessPoolExecutor(max_workers=max(1, min(workers, os.cpu_count() or 1)),
                               mp_context=multiprocessing.get_context("spawn"))


def _build_into(root: Path, final: Path, spec: CorpusSpec, *, workers: int, real: bool,
                progress: Callable[[str], None] | None) -> None:
    started = time.time()
    say = progress or (lambda message: None)
    say(f"building demo corpus {spec.corpus_id} in {final}")
    voices: list[Voice] = [v for name in spec.engines for v in engine_class(name).voices()]
    roles = voices_by_role(voices, spec.seed)
    targets = {"unlabeled": spec.minutes * 60, "train": spec.labeled_minutes * 60,
               "valid": spec.eval_minutes * 60, "test": spec.eval_minutes * 60}
    counts = {role: sentences_needed(seconds) for role, seconds in targets.items()}
    counts["unlabeled"] = sentences_needed(targets["unlabeled"], 1.5)
    counts["unpaired"] = spec.unpaired_sentences
    pools = make_text_pools(spec.seed, counts, available=spec.text_sources)
    clips = real_clips() if real else []
    real_texts = [normalize_text(c.transcript) for c in clips]
    g2p_inputs = list(dict.fromkeys(
        [t for role in ("train", "valid", "test", "unpaired") for t in pools.roles[role]]
        + [t for t in real_texts if t]))
    splits = [SplitPlan(name=name, sentences=pools.roles[name],
                        voices=roles["train"] if name == "unlabeled" else roles[name],
                        target_seconds=targets[name])
              for name in ("unlabeled", "train", "valid", "test")]
    with _executor(workers) as executor:
        g2p = executor.submit(phonemize, g2p_inputs)
        synthesize_splits(splits, seed=spec.seed, root=root, executor=executor, progress=say)
        phone_lists, dropped, espeak_version = g2p.result()
    phones = dict(zip(g2p_inputs, phone_lists))

    by_name = {s.name: s for s in splits}
    for split in splits:
        write_split(root, final, split.name, split.utterances,
                    phones=None if split.name == "unlabeled" else phones)
    real_utts = _write_real(root, final, clips, real_texts, phones)

    unpaired = pools.roles["unpaired"]
    write_lines(root / "unpaired.txt", unpaired)
    write_lines(root / "unpaired.phn", [" ".join(phones[t]) for t in unpaired])
    lm_text = list(dict.fromkeys(unpaired + [u.text for u in by_name["train"].utterances]))
    write_lines(root / "lm.txt", lm_text)

    labeled = [u for name in LABELED_SPLITS for u in by_name[name].utterances] + real_utts
    train = by_name["train"].utterances
    write_dictionary(root / "dict.ltr.txt", symbol_counts(letters(u.text) for u in train),
                     symbol_counts(letters(u.text) for u in labeled))
    aligned = {p for u in labeled for p, _, _ in u.segments} - {SILENCE}
    write_dictionary(root / "dict.phn.txt",
                     symbol_counts([" ".join(phones[u.text]) for u in train]
                                   + [" ".join(phones[t]) for t in unpaired]),
                     set(symbol_counts(" ".join(phones[u.text]) for u in labeled)) | aligned)

    meta = _meta(spec, splits, real_utts, clips, pools, unpaired, lm_text, dropped, espeak_version,
                 workers, partition_speakers(voices, spec.seed))
    (root / "README.txt").write_text(README)
    meta["disk_mb"] = round(sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20, 2)
    meta["build_seconds"] = round(time.time() - started, 2)
    (root / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    (root / "DONE").write_text(spec.corpus_id + "\n")
    say(f"demo corpus {spec.corpus_id} built in {meta['build_seconds']:.1f} s ({meta['disk_mb']} MB)")


def _write_real(root: Path, final: Path, clips, texts, phones) -> list[Utterance]:
    import soundfile

    utts = []
    for clip, text in zip(clips, texts):
        if not text:
            continue
        samples = clip.samples()
        rel = f"audio/real/{clip.key}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(root / rel), samples, SAMPLE_RATE, subtype="PCM_16")
        utts.append(Utterance(key=clip.key, split="real", text=text,
                              voice=Voice(engine="human", name=clip.source, speaker=clip.speaker),
                              rate=1.0, pitch=0.5, speed=1.0, path=rel, num_samples=len(samples)))
    if utts:
        write_split(root, final, "real", utts, phones=phones, alignments=False)
    return utts


def _split_meta(split: SplitPlan, text_sources: list[str]) -> dict:
    engines: dict[str, int] = {}
    for u in split.utterances:
        engines[u.voice.engine] = engines.get(u.voice.engine, 0) + 1
    return {"utterances": len(split.utterances), "seconds": round(split.seconds, 2),
            "minutes": round(split.seconds / 60, 3), "target_minutes": round(split.target_seconds / 60, 4),
            "engines": engines, "voices": sorted({u.voice.id for u in split.utterances}),
            "speakers": sorted({u.voice.speaker for u in split.utterances}),
            "failed_utterances": len(split.failed), "text_sources": text_sources}


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("numpy", "soundfile", "phonemizer", "espeakng-loader", "w2v"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = ""
    return out


def _meta(spec, splits, real_utts, clips, pools, unpaired, lm_text, dropped, espeak_version, workers,
          speakers) -> dict:
    real_seconds = sum(u.num_samples for u in real_utts) / SAMPLE_RATE
    return {
        "corpus_id": spec.corpus_id,
        "format_version": FORMAT_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": spec.seed,
        "engines": engine_versions(spec.engines),
        "sizes": {"unlabeled_minutes": spec.minutes, "labeled_minutes": spec.labeled_minutes,
                  "eval_minutes": spec.eval_minutes, "unpaired_sentences": spec.unpaired_sentences},
        "audio": {"sample_rate": SAMPLE_RATE, "channels": 1, "subtype": "PCM_16"},
        "splits": {s.name: _split_meta(s, pools.sources[s.name]) for s in splits},
        "speakers": speakers,
        "real": {"utterances": len(real_utts), "seconds": round(real_seconds, 2),
                 "sources": sorted({c.source for c in clips}),
                 "package": "pocketsphinx-testdata" if clips else None,
                 "note": "real human speech; a smoke-test set, not a benchmark" if clips else
                 "pocketsphinx-testdata is not installed: no real split"},
        "unpaired": {"sentences": len(unpaired), "sources": pools.sources["unpaired"]},
        "lm": {"sentences": len(lm_text), "contents": "unpaired text + labeled train transcripts"},
        "text": {"available_sources": list(spec.text_sources), "normalised": True,
                 "case": "upper", "sources_per_role": pools.sources},
        "g2p": {"tool": "phonemizer", "backend": "espeak-ng (espeakng-loader wheel)",
                "espeak_version": espeak_version, "language": "en-us", "with_stress": False,
                "dropped_symbols": dropped},
        "alignments": {"file": "<split>.align.tsv", "unit": "samples at 16 kHz",
                       "format": "PHONE,START,END segments, contiguous, END exclusive; sil = pause"},
        "workers": workers,
        "versions": _versions(),
        "platform": platform.platform(),
        "licence_note": ("contains audio made with the non-free MBROLA voices: do not redistribute"
                         if "mbrola" in spec.engines else ""),
    }
