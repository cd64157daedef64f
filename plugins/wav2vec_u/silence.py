"""The ``remove_silence`` stage: wav2vec-U's silence removal (fairseq ``vads.py`` +
``remove_silence.py``), recorded so that it can be undone.

For every split of ``data:`` (and extra ``manifests:``) it finds speech with the energy
detector of :mod:`.vad`, writes each utterance's speech intervals back to back as a new
file and leaves, in the stage directory:

- ``audio/<split>/<relative path>.wav``: the trimmed audio (the input's rate, channels
  and sample format where WAV holds it; samples unchanged);
- ``<split>.tsv``: a fairseq manifest of it, so a later stage reads the split with
  ``data: {train: <this stage's id>}`` (or ``data.train: RUN/<id>/train.tsv``);
- ``<split>.vads``: the kept ``start:end`` intervals of each row in the original file's
  samples (fairseq's ``.vads`` format), the record :func:`read_vads` and
  :func:`w2v.plugins.wav2vec_u.vad.to_original` undo the trimming with;
- the labels beside the input manifest carried along: ``.phn``, ``.ltr``, ``.wrd``,
  ``.info.tsv`` row for row, ``dict.*.txt``, and ``.align.tsv`` (``PHONE,START,END``
  segments) moved onto the trimmed samples: a segment in removed audio becomes empty
  (``START == END``), so the phone sequence stays that of ``.phn``;
- ``silence.json``: per split, audio in and kept (seconds), removed (seconds and %),
  utterances without detected speech, skipped bad inputs.

An utterance in which no speech is found (near-silence, steady noise) is kept whole and
counted under ``no_speech``. Bad inputs (missing, unreadable, all-zero files, ...) follow
``data.bad_input``: ``fail`` stops naming the file and manifest line, ``skip`` leaves the
row out of the manifest and every label file and lists it in ``skipped.tsv``; nothing
else is dropped. ``method: none`` writes the
manifests, records and labels without touching the audio (fairseq skips the VAD for
TIMIT, whose transcripts mark silence). Each finished split leaves ``<split>.done``, so
an interrupted stage resumes with the next split.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Literal

import attrs
import numpy as np
import torch

from w2v.config import check, choice, field, real
from w2v.errors import DataError
from w2v.interfaces import Stage
from w2v.plugins.stages.inputs import stage_manifests

from .vad import VadSettings, speech_intervals, to_trimmed

log = logging.getLogger("w2v")

#: Label files carried row for row (``train.tsv`` -> ``train.phn``); ``.info.tsv`` has a header.
LABEL_EXTS = ("phn", "ltr", "wrd", "info.tsv")
SUMMARY_FILE = "silence.json"


@attrs.define(kw_only=True)
class RemoveSilenceConfig:
    splits: list[str] | None = field(None, "splits of `data:` to trim (null: every split set "
                                           "there)")
    manifests: dict[str, str] = field({}, "more manifests to trim, `name: path` (or "
                                          "`CORPUS:SPLIT`)")
    method: Literal["energy", "none"] = choice(
        "energy", "`energy`: frame-energy voice activity detection (fairseq runs rVAD); "
                  "`none`: keep the audio whole (manifests, records and labels are still "
                  "written, so later stages read this stage either way)")
    frame_ms: float = real(25.0, 1.0, 1000.0, "analysis frame length (rVAD: 25 ms)")
    shift_ms: float = real(10.0, 1.0, 1000.0, "analysis frame shift (rVAD: 10 ms)")
    threshold: float = real(0.3, 0.0, 1.0, "a frame is speech above floor + threshold x "
                                           "(peak - floor), in dB, of its utterance's levels")
    floor_percentile: float = real(5.0, 0.0, 100.0, "percentile of the frame levels taken "
                                                    "as the utterance's noise floor")
    peak_percentile: float = real(95.0, 0.0, 100.0, "percentile of the frame levels taken "
                                                    "as its speech peak")
    min_range_db: float = real(15.0, 0.0, 200.0, "peak - floor below this: no speech in the "
                                                 "utterance (it is kept whole)")
    min_speech_ms: float = real(30.0, 0.0, 60000.0, "shorter speech runs count as silence")
    min_silence_ms: float = real(200.0, 0.0, 60000.0, "shorter pauses between speech are "
                                                      "kept (leading/trailing silence is "
                                                      "removed whatever its length)")
    pad_ms: float = real(30.0, 0.0, 10000.0, "audio kept on both sides of each speech run")

    def __attrs_post_init__(self) -> None:
        check(self.floor_percentile < self.peak_percentile, "floor_percentile",
              f"must be below peak_percentile ({self.peak_percentile}), found "
              f"{self.floor_percentile}.")
        check(self.shift_ms <= self.frame_ms, "shift_ms",
              f"must not exceed frame_ms ({self.frame_ms}), found {self.shift_ms}.")

    def settings(self, rate: int) -> VadSettings:
        """The detector's settings at ``rate`` Hz (ms -> samples and frames)."""
        shift = max(1, round(self.shift_ms * rate / 1000))
        return VadSettings(
            frame=max(shift, round(self.frame_ms * rate / 1000)), shift=shift,
            threshold=self.threshold, floor_percentile=self.floor_percentile,
            peak_percentile=self.peak_percentile, min_range_db=self.min_range_db,
            min_speech=round(self.min_speech_ms / self.shift_ms),
            min_silence=round(self.min_silence_ms / self.shift_ms),
            pad=round(self.pad_ms * rate / 1000))


class RemoveSilenceStage(Stage):
    """Voice activity detection per split: trimmed audio, manifests, the kept intervals."""

    Config = RemoveSilenceConfig

    def inputs(self, sections) -> dict[str, str | None]:
        cfg, data = self.config, sections.data
        splits = cfg.splits if cfg.splits is not None else \
            [s for s in ("train", "valid", "test") if data.manifest(s) is not None]
        found = {f"data.{s}": data.manifest(s) for s in splits if s in ("train", "valid", "test")}
        found.update({f"manifests.{k}": v for k, v in cfg.manifests.items()})
        return found

    def run(self, context) -> None:
        cfg = self.config
        data = context.sections.data
        manifests = stage_manifests(cfg.splits, cfg.manifests, data, context.stage_id, context)
        out = Path(context.stage_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary_path = out / SUMMARY_FILE
        settings = attrs.asdict(cfg)
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        if not context.resume or summary.get("settings") != settings:
            summary = {}                # splits of an earlier run are redone, not kept
        summary = {"settings": settings, "splits": summary.get("splits", {})}
        skipped: list = []
        for name, path in manifests.items():
            if (out / f"{name}.done").exists() and name in summary["splits"]:
                log.info("remove_silence: `%s` was trimmed by the interrupted run; kept", name)
                continue
            counts, bad = trim_split(path, out, name, cfg, policy=data.bad_input)
            if bad:
                from w2v.data.skips import write_skip_report

                skipped += bad
                log.warning("stage `%s`: %s", context.stage_id,
                            write_skip_report(skipped, str(out)))
                check_skips(len(bad), len(bad) + counts["utterances"], data.max_skipped, path)
            summary["splits"][name] = counts
            summary_path.write_text(json.dumps(summary, indent=2) + "\n")
            (out / f"{name}.done").write_text(f"{counts['utterances']} utterances\n")
            log.info("remove_silence: %s: %d utterances, %.1f s -> %.1f s (%.1f s, %.1f %% "
                     "removed), %d without speech kept whole, %d skipped", name,
                     counts["utterances"], counts["seconds"], counts["kept_seconds"],
                     counts["removed_seconds"], counts["removed_percent"],
                     counts["no_speech"], counts["skipped"])
            if counts["no_speech"]:
                log.warning("remove_silence: %s: no speech found in %d utterances (kept whole; "
                            "rows listed under `no_speech_rows` in %s)", name,
                            counts["no_speech"], summary_path)


# ------------------------------------------------------------------ one split
def trim_split(manifest_path: str, out: Path, name: str, cfg: RemoveSilenceConfig, *,
               policy: str = "fail") -> tuple[dict, list]:
    """Trim every row of a manifest into ``out`` (see the module docstring); returns the
    split's counts and the bad inputs the ``skip`` policy left out."""
    from w2v.data.manifest import read_manifest, write_manifest
    from w2v.data.skips import BadInput, handle

    manifest = read_manifest(manifest_path)
    audio_dir = (out / "audio" / name).absolute()
    entries, vads, rows, skipped, no_speech = [], [], [], [], []
    seconds = kept = 0.0
    for row in range(len(manifest)):
        rel = manifest.relpath(row)
        try:
            if cfg.method == "none":
                size, rate = int(manifest.sizes[row]), None
                intervals = torch.tensor([[0, size]])
            else:
                samples, mono, rate, subtype = read_samples(manifest.audio_path(row),
                                                            int(manifest.sizes[row]))
                size = samples.shape[0]
                intervals = speech_intervals(mono, cfg.settings(rate))
                if len(intervals) == 0:
                    no_speech.append(int(manifest.lines[row]))
                    intervals = torch.tensor([[0, size]])
                rel = output_relpath(rel, row)
                write_trimmed(audio_dir / rel, samples, intervals, rate, subtype)
        except BadInput as bad:
            handle(bad.at(manifest.where(row)), policy, skipped)
            continue
        kept_samples = int((intervals[:, 1] - intervals[:, 0]).sum())
        if rate is not None:
            seconds, kept = seconds + size / rate, kept + kept_samples / rate
        entries.append((rel, kept_samples))
        vads.append(intervals)
        rows.append(row)
    root = manifest.root if cfg.method == "none" else str(audio_dir)
    write_manifest(str(out / f"{name}.tsv"), root, entries)
    write_vads(out / f"{name}.vads", vads)
    carried = carry_labels(Path(manifest_path), out, name, rows, vads, len(manifest))
    removed = seconds - kept
    return {"manifest": str(manifest_path), "utterances": len(entries),
            "seconds": round(seconds, 3), "kept_seconds": round(kept, 3),
            "removed_seconds": round(removed, 3),
            "removed_percent": round(100.0 * removed / seconds, 3) if seconds else 0.0,
            "no_speech": len(no_speech), "no_speech_rows": no_speech,
            "skipped": len(skipped), "labels": carried}, skipped


def check_skips(bad: int, total: int, limit: float, manifest_path: str) -> None:
    """DataError when the bad inputs of a split exceed ``data.max_skipped`` (or are all)."""
    if total and (bad == total or bad / total > limit):
        raise DataError(f"{bad} of {total} utterances of `{manifest_path}` are bad inputs, "
                        f"more than `data.max_skipped` ({limit}) allows.",
                        hint="See skipped.tsv in the stage directory for the files and why.")


def read_samples(path: str, expected: int | None = None
                 ) -> tuple[np.ndarray, torch.Tensor, int, str]:
    """``(samples [S, C] float32, their mono mix [S], rate, subtype)`` of an audio file,
    checked as the project's audio reader checks what it decodes (:func:`w2v.data.audio.
    checked_wave`: empty, not the manifest's length, non-finite, all zero, out of range); the
    samples stay as stored so the trimmed file keeps them."""
    import soundfile as sf

    from w2v.data.audio import audio_info, checked_wave
    from w2v.data.skips import BadInput

    info = audio_info(path)                                  # missing, undecodable
    try:
        samples, rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise BadInput("unreadable", path, str(exc).replace(f"'{path}'", "").strip(" :")) \
            from None
    mono, _ = checked_wave(samples, int(rate), path, sample_rate=int(rate),
                           expected_samples=expected)
    return samples, mono, int(rate), info.subtype


def output_relpath(rel: str, row: int) -> str:
    """The trimmed file's path under the split's audio folder: the manifest's relative path
    as ``.wav`` (``row``-numbered when it would leave the folder)."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts:
        return f"{row:08d}.wav"
    return str(path.with_suffix(".wav"))


def write_trimmed(path: Path, samples: np.ndarray, intervals: torch.Tensor, rate: int,
                  subtype: str) -> None:
    """The kept ``intervals`` ``[K, 2]`` of ``samples`` ``[S, C]`` back to back as a WAV file
    (written to a temporary name, then renamed, so a file present is complete)."""
    import soundfile as sf

    keep = np.concatenate([samples[a:b] for a, b in intervals.tolist()])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if not sf.check_format("WAV", subtype):
        subtype = "FLOAT"
    sf.write(str(tmp), keep, rate, subtype=subtype, format="WAV")
    os.replace(tmp, path)


# ------------------------------------------------------------------ records and labels
def write_vads(path: Path, vads: list[torch.Tensor]) -> None:
    """One line per row: its kept intervals as ``start:end`` pairs (fairseq ``.vads``)."""
    path.write_text("".join(" ".join(f"{a}:{b}" for a, b in iv.tolist()) + "\n" for iv in vads))


def read_vads(path: str | Path) -> list[torch.Tensor]:
    """The kept intervals ``[K, 2]`` int64 of each row of a ``.vads`` file (an empty line,
    fairseq's "nothing detected", is an empty ``[0, 2]``)."""
    out = []
    for line in Path(path).read_text().splitlines():
        pairs = [tuple(map(int, item.split(":"))) for item in line.split()]
        out.append(torch.tensor(pairs, dtype=torch.long).reshape(-1, 2))
    return out


def carry_labels(manifest_path: Path, out: Path, name: str, rows: list[int],
                 vads: list[torch.Tensor], total: int) -> list[str]:
    """Copy the label files beside ``manifest_path`` for the kept ``rows`` (``vads``: their
    intervals, for ``.align.tsv``) and the ``dict.*.txt`` files; returns the extensions
    carried."""
    carried = []
    for ext in (*LABEL_EXTS, "align.tsv"):
        src = manifest_path.with_suffix(f".{ext}")
        if not src.is_file():
            continue
        lines = src.read_text(encoding="utf-8").splitlines()
        header = lines[:1] if ext == "info.tsv" else []
        body = lines[len(header):]
        if len(body) != total:
            raise DataError(f"`{src}` has {len(body)} rows for the {total} utterances of "
                            f"`{manifest_path}`.", hint="Labels must follow the manifest row "
                                                        "for row.")
        kept = [body[r] for r in rows]
        if ext == "align.tsv":
            kept = [shift_alignment(line, iv) for line, iv in zip(kept, vads)]
        (out / f"{name}.{ext}").write_text("".join(f"{line}\n" for line in header + kept),
                                           encoding="utf-8")
        carried.append(ext)
    for dictionary in sorted(manifest_path.parent.glob("dict.*.txt")):
        if not (out / dictionary.name).exists():
            shutil.copyfile(dictionary, out / dictionary.name)
    return carried


def shift_alignment(line: str, intervals: torch.Tensor) -> str:
    """An ``.align.tsv`` line (``PHONE,START,END`` segments, original samples) moved onto
    the trimmed audio; a segment inside removed audio becomes empty."""
    segments = [item.rsplit(",", 2) for item in line.split()]
    if not segments:
        return line
    bounds = torch.tensor([[int(s), int(e)] for _, s, e in segments])
    moved = to_trimmed(intervals, bounds.flatten()).reshape(-1, 2).tolist()
    return " ".join(f"{label},{s},{e}" for (label, _, _), (s, e) in zip(segments, moved))
