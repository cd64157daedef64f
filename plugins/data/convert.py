"""``w2vrun manifest --source NAME``: any waveform data source to fairseq manifests.

For each split it writes ``<dest>/<split>.tsv`` and, when the source has
transcripts, ``<split>.wrd``, ``<split>.ltr`` and (for ``train``)
``dict.ltr.txt``. Rows that are whole audio files keep their files; segments
(Kaldi ``segments``, Lhotse cuts) and audio held inside a dataset
(``hf_dataset``) are written as WAV files under ``<dest>/audio/<split>/``.
Rows the bad-input policy (``--bad-input skip``) leaves out are listed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import soundfile as sf

from w2v.data.labels import write_labels
from w2v.data.manifest import write_manifest
from w2v.data.sources import AudioSource
from w2v.errors import DataError


def raw_samples(table, row: int):
    """``(samples [S, C], rate, subtype)`` of a row at its own rate: the file's segment, or
    the encoded audio a dataset row holds."""
    dataset = getattr(table, "dataset", None)
    if dataset is not None:                                   # hf_dataset: bytes or a path
        audio = dataset[int(table.positions[row])][table.column]
        handle = io.BytesIO(audio["bytes"]) if audio.get("bytes") else audio.get("path")
        start, stop = 0, None
    else:
        handle = table.audio_path(row)
        start, stop = table.segment(row)
    info = sf.info(handle)
    if isinstance(handle, io.BytesIO):
        handle.seek(0)
    data, rate = sf.read(handle, start=start, stop=stop, always_2d=True, dtype="float32")
    return data, rate, info.subtype


def convert_split(source: AudioSource, split: str, dest: str | Path) -> dict:
    """Write the fairseq manifest (and labels) of ``split``; returns what was written."""
    dest = Path(dest)
    table = source.table(split)
    texts = source.transcripts(split, table)
    whole = table.starts is None and getattr(table, "dataset", None) is None
    audio_dir = dest / "audio" / split
    files = []
    for row in range(len(table)):
        if whole:
            files.append((os.path.realpath(table.audio_path(row)), int(table.sizes[row])))
            continue
        data, rate, subtype = raw_samples(table, row)
        name = table.utterance_id(row).replace("/", "_") + ".wav"
        audio_dir.mkdir(parents=True, exist_ok=True)
        target = audio_dir / name
        sf.write(target, data, rate, subtype=subtype if subtype in sf.available_subtypes("WAV")
                 else "PCM_16")
        files.append((str(target.resolve()), int(data.shape[0])))
    if not files:
        raise DataError(f"`{table.path}` has no usable utterances to convert.")
    root = os.path.commonpath([os.path.dirname(f) for f, _ in files])
    tsv = dest / f"{split}.tsv"
    write_manifest(str(tsv), root, [(os.path.relpath(f, root), n) for f, n in files])
    written = {"tsv": str(tsv), "utterances": len(files),
               "skipped": list(getattr(table, "skipped", []))}
    if texts is not None:
        ids = [table.utterance_id(r) for r in range(len(table))]
        written.update(write_labels(list(zip(ids, texts)), str(dest / split),
                                    dictionary=split == "train"))
    return written
