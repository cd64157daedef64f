"""The benchmark's corpus: three manifests and the files beside them.

Beside ``<split>.tsv`` (the demo corpus's layout, see its README.txt): ``<split>.ltr`` and
``<split>.phn`` labels with ``dict.ltr.txt`` / ``dict.phn.txt``, ``<split>.align.tsv`` frame
alignments (PNMI) and ``<split>.info.tsv`` with a ``speaker`` column (speaker id). A task
whose files are missing is reported as skipped, with the file it looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import numpy as np

from w2v.errors import DataError


@attrs.frozen(kw_only=True)
class Split:
    """One split: its name in the benchmark (train, valid, test) and its manifest file."""

    name: str
    reference: str
    manifest: str

    def beside(self, ext: str) -> Path:
        """``<split>.<ext>`` next to the manifest."""
        return Path(os.path.splitext(self.manifest)[0] + "." + ext)

    def dictionary(self, labels: str) -> Path:
        return Path(self.manifest).parent / f"dict.{labels}.txt"


def resolve_splits(references: dict[str, str]) -> dict[str, Split]:
    """``{"train": "demo:train", ...}`` -> the splits (a corpus is built on first use)."""
    from w2v.data.loader import resolve_corpus

    out = {}
    for name, ref in references.items():
        path = resolve_corpus(ref, f"--{name}")
        if not os.path.isfile(path):
            raise DataError(f"`--{name} {ref}`: the manifest `{path}` does not exist.",
                            hint="Give a fairseq manifest (.tsv) or a corpus split such as "
                                 "demo:train.")
        out[name] = Split(name=name, reference=ref, manifest=path)
    return out


def missing(split: Split, *files: Path) -> str | None:
    """A reason naming the first of ``files`` that does not exist, else None."""
    for f in files:
        if not f.is_file():
            return f"`{f}` does not exist (split {split.reference})"
    return None


def speakers(split: Split, rows: int) -> np.ndarray:
    """The ``speaker`` column of ``<split>.info.tsv`` (header line first), one per row."""
    path = split.beside("info.tsv")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    if "speaker" not in header:
        raise DataError(f"`{path}` has no `speaker` column (its header is "
                        f"{', '.join(header) or 'empty'}).", where=f"{path}:1")
    column = header.index("speaker")
    values = [line.split("\t")[column] for line in lines[1:] if line.strip()]
    if len(values) != rows:
        raise DataError(f"`{path}` lists {len(values)} utterances but the manifest "
                        f"`{split.manifest}` has {rows}; they must be the same rows.")
    return np.array(values)
