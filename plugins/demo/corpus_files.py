"""Writing the corpus files: fairseq manifests, transcripts, dictionaries, alignments.

Formats (all UTF-8, one utterance per line, in manifest order):

- ``<split>.tsv``: first line the absolute corpus root, then ``rel/path<TAB>num_samples``;
- ``<split>.wrd``: words, upper case; ``<split>.ltr``: ``T H E | C A T |``;
- ``<split>.phn``: space-separated IPA phones (``dict.phn.txt`` symbols);
- ``<split>.align.tsv``: see :mod:`.alignment`;
- ``<split>.info.tsv``: a header line, then per utterance its key, engine, voice,
  speaker, speaking rate, pitch and speed perturbation (same line offset as the manifest);
- ``dict.ltr.txt``, ``dict.phn.txt``: fairseq ``symbol count`` lines, most frequent first.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Iterable, Sequence

from .alignment import format_segments
from .textnorm import letters

INFO_COLUMNS = ("key", "engine", "voice", "speaker", "rate", "pitch", "speed")


def write_lines(path: Path, lines: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")


def write_manifest(path: Path, root: Path, entries: Sequence[tuple[str, int]]) -> None:
    write_lines(path, [str(root)] + [f"{rel}\t{count}" for rel, count in entries])


def write_split(root: Path, final_root: Path, name: str, utterances: Sequence, *,
                phones: dict[str, list[str]] | None, alignments: bool = True) -> None:
    """Manifest and info for any split; with ``phones`` also the labeled files."""
    write_manifest(root / f"{name}.tsv", final_root, [(u.path, u.num_samples) for u in utterances])
    write_lines(root / f"{name}.info.tsv", ["\t".join(INFO_COLUMNS)] + [
        f"{u.key}\t{u.voice.engine}\t{u.voice.name}\t{u.voice.speaker}\t{u.rate:.3f}\t"
        f"{u.pitch:.3f}\t{u.speed:.3f}" for u in utterances])
    if phones is None:
        return
    write_lines(root / f"{name}.wrd", [u.text for u in utterances])
    write_lines(root / f"{name}.ltr", [letters(u.text) for u in utterances])
    write_lines(root / f"{name}.phn", [" ".join(phones[u.text]) for u in utterances])
    if alignments:
        write_lines(root / f"{name}.align.tsv", [format_segments(u.segments) for u in utterances])


def symbol_counts(lines: Iterable[str]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        counts.update(line.split())
    return counts


def write_dictionary(path: Path, counts: collections.Counter[str], symbols: Iterable[str]) -> None:
    """fairseq dictionary: every symbol in ``symbols`` (count 0 if unseen), most frequent first."""
    everything = set(symbols) | set(counts)
    ordered = sorted(everything, key=lambda s: (-counts.get(s, 0), s))
    write_lines(path, [f"{s} {counts.get(s, 0)}" for s in ordered])
