"""fairseq audio manifests: read, write, and make them from a folder of audio.

A manifest (``train.tsv``) has the audio root directory on its first line,
then one utterance per line: ``relative/path<TAB>num_samples`` (samples at the
file's own rate, as ``soundfile.info(path).frames`` reports). Manifests made
by fairseq's ``wav2vec_manifest.py`` load unchanged.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

#: Audio extensions ``w2vrun manifest`` looks for by default.
DEFAULT_EXTS = ("flac", "wav")


class Manifest:
    """A parsed manifest.

    Attributes:
        path: the manifest file.
        root: the audio root directory (line 1).
        sizes: ``[N]`` int64 sample counts.
        lines: ``[N]`` int64 1-based line number of each utterance in ``path``.
        ids: utterance ids, or None.
        starts: ``[N]`` int64 first sample of each utterance in its file, or None
            when every utterance is a whole file (a source with segments: Kaldi
            ``segments``, Lhotse cuts); ``sizes`` then counts the segment's samples.
    Relative audio paths are kept as one UTF-8 byte array (no per-row Python
    objects, so DataLoader workers do not copy them page by page). Sources other
    than fairseq manifests build one in memory: ``path`` is then the file the rows
    come from (``wav.scp``, ``segments``, ``cuts.jsonl.gz``), so messages still
    name a file and line.
    """

    def __init__(self, path: str, root: str, files: Sequence[str], sizes: np.ndarray,
                 lines: np.ndarray, starts: np.ndarray | None = None,
                 ids: Sequence[str] | None = None):
        self.path = path
        self.root = root
        self._files = np.array([f.encode("utf-8") for f in files], dtype=np.bytes_) \
            if len(files) else np.zeros(0, dtype="S1")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.lines = np.asarray(lines, dtype=np.int64)
        self.starts = None if starts is None else np.asarray(starts, dtype=np.int64)
        #: utterance ids (Kaldi, Lhotse, datasets), or None (fairseq: the relative path)
        self.ids = None if ids is None else list(ids)

    def utterance_id(self, row: int) -> str:
        """The row's utterance id (its relative path without extension when it has none)."""
        if self.ids is not None:
            return self.ids[row]
        return os.path.splitext(self.relpath(row))[0]

    def segment(self, row: int) -> tuple[int, int | None]:
        """``(start, stop)`` samples of row ``row`` in its file (``(0, None)``: the whole file)."""
        if self.starts is None:
            return 0, None
        start = int(self.starts[row])
        return start, start + int(self.sizes[row])

    def __len__(self) -> int:
        return len(self.sizes)

    def relpath(self, row: int) -> str:
        return self._files[row].decode("utf-8")

    def audio_path(self, row: int) -> str:
        """Absolute (root-joined) path of row ``row``."""
        return os.path.join(self.root, self.relpath(row))

    def where(self, row: int) -> str:
        """``manifest.tsv:LINE`` of row ``row``."""
        return f"{self.path}:{int(self.lines[row])}"

    def entries(self) -> list[tuple[str, int]]:
        return [(self.relpath(i), int(self.sizes[i])) for i in range(len(self))]


def _content_lines(path: str) -> list[str]:
    """Lines without their newline; trailing blank lines dropped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"manifest `{path}` does not exist.",
                        hint="Make one with `w2vrun manifest AUDIO_DIR --dest DIR`.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"manifest `{path}` is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start}).") from None
    except IsADirectoryError:
        raise DataError(f"manifest `{path}` is a directory, expected a .tsv file.") from None
    except OSError as exc:  # permission denied, I/O error
        raise DataError(f"manifest `{path}` cannot be read: {exc.strerror or exc}.",
                        hint="Check its permissions (`ls -l`), or point the recipe at a "
                             "readable copy.") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_manifest(path: str) -> Manifest:
    """Parse a fairseq manifest; a malformed line raises DataError at ``path:line``."""
    lines = _content_lines(path)
    if not lines or not lines[0].strip():
        raise DataError("expected the audio root directory on the first line, found "
                        f"{'an empty file' if not lines else 'an empty line'}.",
                        where=f"{path}:1")
    root = lines[0].strip()
    if "\t" in root:
        raise DataError(f"expected the audio root directory on the first line, found a "
                        f"tab-separated row `{root[:60]}`.", where=f"{path}:1",
                        hint="A fairseq manifest starts with the root folder of the audio files.")
    files, sizes, numbers = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(f"expected 2 tab-separated fields `relative/path<TAB>num_samples`, "
                            f"found {len(fields)} in `{line[:80]}`.", where=f"{path}:{number}")
        rel, count = fields[0].strip(), fields[1].strip()
        if not rel:
            raise DataError("the audio path is empty.", where=f"{path}:{number}")
        try:
            n = int(count)
        except ValueError:
            raise DataError(f"expected an integer sample count, found `{count[:40]}`.",
                            where=f"{path}:{number}") from None
        if n < 0:
            raise DataError(f"expected a sample count >= 0, found {n}.", where=f"{path}:{number}")
        files.append(rel)
        sizes.append(n)
        numbers.append(number)
    return Manifest(path, root, files, np.array(sizes, dtype=np.int64),
                    np.array(numbers, dtype=np.int64))


def write_manifest(path: str, root: str, entries: Iterable[tuple[str, int]]) -> int:
    """Write a fairseq manifest; returns the number of rows."""
    n = 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(root + "\n")
        for rel, size in entries:
            if "\t" in rel or "\n" in rel:
                raise DataError(f"cannot write `{rel!r}` to a manifest: the path contains a tab "
                                "or newline.")
            f.write(f"{rel}\t{int(size)}\n")
            n += 1
    return n


def find_audio(audio_dir: str, exts: Sequence[str] = DEFAULT_EXTS) -> list[str]:
    """Audio files under ``audio_dir`` (recursive) with one of ``exts``, sorted."""
    suffixes = tuple("." + e.lower().lstrip(".") for e in exts)
    found = []
    for folder, dirs, names in os.walk(audio_dir, followlinks=True):
        dirs.sort()
        found.extend(os.path.join(folder, n) for n in names if n.lower().endswith(suffixes))
    return sorted(found)


def write_manifests(audio_dir: str, dest: str, exts: Sequence[str] = DEFAULT_EXTS,
                    valid_percent: float = 0.01, seed: int = 42,
                    path_must_contain: str | None = None) -> dict[str, str]:
    """Make ``train.tsv`` and ``valid.tsv`` from every audio file under ``audio_dir``.

    As fairseq's ``wav2vec_manifest.py``: the root is ``realpath(audio_dir)``,
    each file goes to valid with probability ``valid_percent`` (a
    ``random.Random(seed)`` draw per file), sample counts come from
    ``soundfile.info``. Files are visited in sorted order (fairseq uses the
    filesystem's order), so the split is reproducible across machines. No
    ``valid.tsv`` is written when ``valid_percent`` is 0.

    Returns:
        ``{"train": path, "valid": path}`` of the manifests written.
    """
    import soundfile as sf

    if not os.path.isdir(audio_dir):
        raise DataError(f"audio directory `{audio_dir}` does not exist or is not a directory.")
    if not 0.0 <= valid_percent <= 1.0:
        raise DataError(f"--valid-percent must be between 0 and 1, found {valid_percent}.",
                        hint="It is a fraction: 0.01 puts 1% of the files in valid.tsv.")
    root = os.path.realpath(audio_dir)
    files = find_audio(root, exts)
    if path_must_contain:
        files = [f for f in files if path_must_contain in f]
    if not files:
        raise DataError(f"no audio files with extension {', '.join(exts)} under `{audio_dir}`.",
                        hint="Pass the extensions with --ext (e.g. --ext flac,wav,ogg).")
    rng = random.Random(seed)
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "valid": []}
    unreadable = []
    for name in files:
        try:
            frames = sf.info(name).frames
        except (RuntimeError, sf.LibsndfileError) as exc:
            unreadable.append(f"{name} ({exc})")
            continue
        split = "train" if rng.random() > valid_percent else "valid"
        splits[split].append((os.path.relpath(os.path.realpath(name), root), frames))
    if unreadable:
        log.warning("left %d unreadable files out of the manifest, e.g. %s", len(unreadable),
                    unreadable[0])
    written = {}
    for split, entries in splits.items():
        if split == "valid" and valid_percent == 0:
            continue
        written[split] = os.path.join(dest, f"{split}.tsv")
        write_manifest(written[split], root, entries)
    log.info("wrote %s", ", ".join(f"{p} ({len(splits[s])} files)" for s, p in written.items()))
    return written
