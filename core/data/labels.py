"""Label files aligned with a manifest, and building them from transcripts.

Beside ``train.tsv`` live ``train.ltr`` (letters: ``T H E | C A T |``),
``train.wrd`` (words) or ``train.phn`` (phones), one line per manifest row,
and the dictionary ``dict.ltr.txt`` (fairseq ``symbol count`` lines). Label
lines are whitespace-separated symbols of the dictionary.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import DataError
from .dictionary import WORD_BOUNDARY
from .manifest import Manifest
from .skips import BadInput


def label_path(manifest_path: str, ext: str) -> str:
    """``train.tsv`` -> ``train.<ext>`` beside it."""
    return os.path.splitext(manifest_path)[0] + "." + ext


def dictionary_path(manifest_path: str, ext: str) -> str:
    """``dict.<ext>.txt`` beside the manifest."""
    return os.path.join(os.path.dirname(manifest_path), f"dict.{ext}.txt")


def read_label_lines(path: str, manifest: Manifest) -> list[str]:
    """The lines of label file ``path``; DataError unless there is one per manifest row."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"label file `{path}` does not exist (labels for manifest "
                        f"`{manifest.path}`).",
                        hint="Make it with `w2vrun labels TRANSCRIPTS.tsv --dest PREFIX "
                             "--manifest MANIFEST`, or set `data.labels: null`.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"label file `{path}` is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start}).") from None
    # trailing blank lines beyond the manifest's rows go; an empty last label is a row
    while len(lines) > len(manifest) and not lines[-1].strip():
        lines.pop()
    if len(lines) != len(manifest):
        raise DataError(f"label file `{path}` has {len(lines)} lines but manifest "
                        f"`{manifest.path}` has {len(manifest)} utterances; they must match "
                        "line by line.",
                        hint="Remake the labels from the same manifest.")
    return lines


def encode_labels(lines: Sequence[str], dictionary: Any, path: str, manifest: Manifest
                  ) -> tuple[np.ndarray, np.ndarray, dict[int, BadInput]]:
    """Encode label lines with ``dictionary`` (any object with ``index`` and ``in``).

    Returns:
        ``(tokens, offsets, bad)``: flat int64 ids, ``[N + 1]`` offsets (row i is
        ``tokens[offsets[i]:offsets[i+1]]``), and the rows whose symbols are not
        in the dictionary (BadInput located at ``path:line``).
    """
    ids: dict[str, int | None] = {}
    tokens: list[int] = []
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    bad: dict[int, BadInput] = {}
    for row, line in enumerate(lines):
        symbols = line.split()
        for s in symbols:
            if s not in ids:
                ids[s] = dictionary.index(s) if s in dictionary else None
        encoded = [ids[s] for s in symbols]
        if None in encoded:
            missing = list(dict.fromkeys(s for s in symbols if ids[s] is None))
            shown = ", ".join(f"`{s}`" for s in missing[:5]) + (" ..." if len(missing) > 5 else "")
            bad[row] = BadInput("unknown-symbol", manifest.audio_path(row),
                                f"{shown} not in the dictionary", where=f"{path}:{row + 1}")
            encoded = []
        tokens.extend(encoded)
        offsets[row + 1] = len(tokens)
    return np.array(tokens, dtype=np.int64), offsets, bad


def load_dictionary(path: str):
    """Load a fairseq dictionary file with :class:`w2v.data.dictionary.Dictionary`."""
    from .dictionary import Dictionary

    if not os.path.isfile(path):
        raise DataError(f"dictionary `{path}` does not exist.",
                        hint="`w2vrun labels` writes dict.ltr.txt beside the labels; or set "
                             "`data.dictionary`.")
    return Dictionary.load(path)


# --------------------------------------------------------------------------- building labels


def normalize_words(text: str) -> str:
    """Upper-case, single-spaced words (fairseq's LibriSpeech ``.wrd`` style)."""
    return " ".join(text.upper().split())


def letters(text: str) -> str:
    """fairseq letter labels: ``"the cat"`` -> ``"T H E | C A T |"``."""
    words = normalize_words(text).split()
    if not words:
        return WORD_BOUNDARY
    return " ".join(f"{' '.join(w)} {WORD_BOUNDARY}" for w in words)


def read_transcripts(path: str) -> list[tuple[str, str]]:
    """A table of ``id<TAB>text`` lines (blank lines ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"transcript table `{path}` does not exist.") from None
    rows, seen = [], {}
    for number, line in enumerate(raw, start=1):
        if not line.strip():
            continue
        ident, tab, text = line.partition("\t")
        if not tab or not ident.strip():
            raise DataError(f"expected `id<TAB>text`, found `{line[:80]}`.",
                            where=f"{path}:{number}")
        ident = ident.strip()
        if ident in seen:
            raise DataError(f"id `{ident}` appears twice (first on line {seen[ident]}).",
                            where=f"{path}:{number}")
        seen[ident] = number
        rows.append((ident, text.strip()))
    if not rows:
        raise DataError(f"transcript table `{path}` has no rows.")
    return rows


def align_transcripts(transcripts: Sequence[tuple[str, str]], manifest: Manifest
                      ) -> list[tuple[str, str]]:
    """Order ``transcripts`` like ``manifest``'s rows.

    A row matches the id equal to its relative path, its relative path without
    extension, or its file name without extension (``1272-128104-0000``).
    """
    table = dict(transcripts)
    out = []
    for row in range(len(manifest)):
        rel = manifest.relpath(row)
        stem = os.path.splitext(rel)[0]
        keys = (rel, stem, os.path.basename(stem))
        key = next((k for k in keys if k in table), None)
        if key is None:
            raise DataError(f"no transcript for `{rel}` (looked for id `{keys[2]}`).",
                            where=manifest.where(row),
                            hint="Every manifest row needs a transcript row with the same id.")
        out.append((key, table[key]))
    return out


def write_labels(transcripts: Iterable[tuple[str, str]], dest_prefix: str, *,
                 dictionary: bool = True) -> dict[str, str]:
    """Write ``<prefix>.wrd``, ``<prefix>.ltr`` and (``dictionary``) ``dict.ltr.txt``.

    ``dict.ltr.txt`` sits in the prefix's folder: fairseq ``symbol count``
    lines, most frequent first (ties by symbol). Returns the written paths by
    kind (``wrd``, ``ltr``, ``dict``).
    """
    folder = os.path.dirname(os.path.abspath(dest_prefix))
    os.makedirs(folder, exist_ok=True)
    counts: collections.Counter[str] = collections.Counter()
    paths = {"wrd": dest_prefix + ".wrd", "ltr": dest_prefix + ".ltr"}
    with open(paths["wrd"], "w", encoding="utf-8") as wrd, \
            open(paths["ltr"], "w", encoding="utf-8") as ltr:
        for _, text in transcripts:
            line = letters(text)
            counts.update(line.split())
            wrd.write(normalize_words(text) + "\n")
            ltr.write(line + "\n")
    if dictionary:
        paths["dict"] = os.path.join(folder, "dict.ltr.txt")
        with open(paths["dict"], "w", encoding="utf-8") as f:
            for sym, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                f.write(f"{sym} {n}\n")
    return paths
