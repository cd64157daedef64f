"""The ``kaldi`` data source: Kaldi data directories.

A data directory holds ``wav.scp`` (``recording-id path``), and optionally
``segments`` (``utterance-id recording-id start end``, seconds, ``end`` -1 for
the end of the recording), ``text`` (``utterance-id transcript``) and
``utt2spk`` (``utterance-id speaker``). Without ``segments`` every recording
is one utterance. Relative paths are relative to the working directory, as in
Kaldi. ``wav.scp`` entries that are commands (``... |``) or archive offsets
are refused: convert them to audio files first (Kaldi's ``wav-copy``, or
``sox``), since w2v reads files, never runs commands.
"""

from __future__ import annotations

import os

import attrs

from w2v.config import field
from w2v.data.config import DataConfig
from w2v.data.sources import AudioSource, SourceTable, TableRows
from w2v.errors import DataError


@attrs.define(kw_only=True)
class KaldiConfig(DataConfig):
    name: str = field("kaldi", "the data source (`w2vrun list data_source`)")
    train: str | None = field(None, "training data directory (wav.scp, text, segments, utt2spk)")
    valid: str | None = field(None, "validation data directory")
    test: str | None = field(None, "test data directory")
    dictionary: str | None = field(None, "label dictionary (fairseq `symbol count` lines); null: "
                                         "the symbols of the train split's labels")


def read_table(path: str, fields: int, *, required: bool = True) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of each non-blank line: the first ``fields - 1`` whitespace
    separated fields, then the rest of the line as the last one."""
    if not os.path.isfile(path):
        if required:
            raise DataError(f"`{path}` does not exist.",
                            hint="A Kaldi data directory needs wav.scp (and optionally "
                                 "segments, text, utt2spk).")
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.strip().split(None, fields - 1)
            if len(parts) < fields:
                raise DataError(f"expected {fields} fields, found {len(parts)} in "
                                f"`{line.strip()[:80]}`.", where=f"{path}:{number}")
            rows.append((number, parts))
    return rows


def _mapping(path: str, what: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for number, (key, value) in read_table(path, 2, required=False):
        if key in out:
            raise DataError(f"{what} `{key}` appears twice (first on line {out[key][1]}).",
                            where=f"{path}:{number}")
        out[key] = (value, number)
    return out


def read_wav_scp(path: str) -> dict[str, tuple[str, int]]:
    """``recording-id -> (audio path, line)``; commands and archive offsets are DataErrors."""
    out = _mapping(path, "recording id")
    if not out and not os.path.isfile(path):
        read_table(path, 2)  # raises: wav.scp is required
    for rec, (value, number) in out.items():
        if value.rstrip().endswith("|"):
            raise DataError(f"recording `{rec}` is a piped command (`{value[:60]}`); w2v reads "
                            "audio files and does not run commands.", where=f"{path}:{number}",
                            hint="Write the audio to files first (e.g. `wav-copy scp:wav.scp "
                                 "ark,scp:...` or sox) and list their paths in wav.scp.")
        if ".ark:" in value:
            raise DataError(f"recording `{rec}` points into a Kaldi archive (`{value[:60]}`), "
                            "not an audio file.", where=f"{path}:{number}",
                            hint="Extract the audio to files and list their paths in wav.scp.")
    return out


class KaldiSource(AudioSource):
    """Kaldi data directories (``wav.scp`` plain paths, ``segments``, ``text``, ``utt2spk``)."""

    Config = KaldiConfig

    def table(self, split: str) -> SourceTable:
        folder = self.location(split)
        if not os.path.isdir(folder):
            raise DataError(f"Kaldi data directory `{folder}` does not exist.",
                            key=f"data.{split}")
        scp = os.path.join(folder, "wav.scp")
        recordings = read_wav_scp(scp)
        texts = _mapping(os.path.join(folder, "text"), "utterance id")
        speakers = _mapping(os.path.join(folder, "utt2spk"), "utterance id")
        rows = TableRows(self.config.bad_input)
        segments = os.path.join(folder, "segments")
        source = segments if os.path.isfile(segments) else scp
        if source == segments:
            for number, (utt, rec, start, end) in read_table(segments, 4):
                if rec not in recordings:
                    raise DataError(f"segment `{utt}` names recording `{rec}`, which wav.scp "
                                    "does not list.", where=f"{segments}:{number}")
                try:
                    start_s, end_s = float(start), float(end)
                except ValueError:
                    raise DataError(f"expected start and end times in seconds, found `{start}` "
                                    f"and `{end}`.", where=f"{segments}:{number}") from None
                rows.add_file(path=recordings[rec][0], where=f"{segments}:{number}", line=number,
                              uid=utt, start_s=start_s, end_s=end_s,
                              text=texts.get(utt, (None,))[0],
                              speaker=speakers.get(utt, (None,))[0])
        else:
            for rec, (path, number) in recordings.items():
                rows.add_file(path=path, where=f"{scp}:{number}", line=number, uid=rec,
                              text=texts.get(rec, (None,))[0],
                              speaker=speakers.get(rec, (None,))[0])
        return SourceTable(source, rows)
