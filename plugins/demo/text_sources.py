"""Sentence sources available offline, as raw (un-normalised) sentences.

Debian main packages, used when installed:

- ``wordnet``: example sentences of WordNet 3.0 (``wordnet-base``), short and modern;
- ``fortunes``: fortune cookies (``fortunes``), from a list of mild files only;
- ``kjv``: King James Bible verses (``bible-kjv``), split at sentence ends.

``generator``: the built-in grammar (:mod:`.sentence_grammar`), always available.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: Fortune files used (the rest of the collection has cruder or dated content).
FORTUNE_FILES = ("fortunes", "wisdom", "platitudes", "literature", "science", "computers",
                 "education", "food", "kids", "pets", "riddles", "sports", "work", "people",
                 "tao", "art", "humorists", "magic", "miscellaneous", "paradoxum", "goedel",
                 "linux", "startrek", "pratchett", "songs-poems")

#: One-letter codes used in corpus ids.
SOURCE_CODES = {"wordnet": "w", "fortunes": "f", "kjv": "k", "generator": "g"}

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z])")


def split_sentences(text: str) -> list[str]:
    """Split running text at sentence ends (``.``, ``!``, ``?`` followed by a capital)."""
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def wordnet_examples(root: Path = WORDNET_DIR) -> list[str]:
    """The quoted example sentences of WordNet's ``data.{noun,verb,adj,adv}`` glosses."""
    found = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        with open(path, encoding="latin-1") as lines:
            for line in lines:
                if line.startswith("  "):  # licence header
                    continue
                gloss = line.split("|", 1)[-1]
                found.extend(re.findall(r'"([^"]+)"', gloss))
    return found


def fortune_sentences(root: Path = FORTUNES_DIR) -> list[str]:
    """Sentences from the mild fortune files, without attributions or enumerations."""
    found = []
    for name in FORTUNE_FILES:
        path = root / name
        if not path.is_file():
            continue
        for cookie in path.read_text(encoding="latin-1").split("\n%\n"):
            body = [ln for ln in cookie.splitlines() if not ln.strip().startswith("--")]
            text = re.sub(r"(^|\s)\(?\d+\)\s", " ", " ".join(body))
            found.extend(split_sentences(text))
    return found


def kjv_sentences() -> list[str]:
    """King James Bible verses (via the ``bible`` reader), split at sentence ends."""
    dump = subprocess.run(["bible", "-f", "-l100000", "gen1:1-rev22:21"], capture_output=True,
                          text=True, check=True, timeout=60).stdout
    found = []
    for line in dump.splitlines():
        verse = line.split(" ", 1)[-1]
        found.extend(split_sentences(verse))
    return found


def _has_wordnet() -> bool:
    return (WORDNET_DIR / "data.noun").is_file()


def _has_fortunes() -> bool:
    return any((FORTUNES_DIR / name).is_file() for name in FORTUNE_FILES)


def _has_kjv() -> bool:
    if shutil.which("bible") is None:
        return False
    try:
        probe = subprocess.run(["bible", "-f", "gen1:1"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "beginning" in probe.stdout


DEBIAN_SOURCES: dict[str, tuple[Callable[[], bool], Callable[[], list[str]], str]] = {
    "wordnet": (_has_wordnet, wordnet_examples, "wordnet-base"),
    "fortunes": (_has_fortunes, fortune_sentences, "fortunes"),
    "kjv": (_has_kjv, kjv_sentences, "bible-kjv"),
}


def available_sources() -> list[str]:
    """Names of the Debian text sources installed on this machine."""
    return [name for name, (present, _, _) in DEBIAN_SOURCES.items() if present()]


def load_source(name: str) -> list[str]:
    """Raw sentences of one Debian source."""
    return DEBIAN_SOURCES[name][1]()
