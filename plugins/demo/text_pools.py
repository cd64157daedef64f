"""Disjoint normalised sentence pools for every role of the corpus.

Roles and where their sentences come from (first available source wins):

- ``valid``, ``test``, ``train`` (labeled): WordNet examples, else the grammar;
- ``unpaired`` (wav2vec-U text): the rest of the labeled source, alternating
  with fortunes when installed;
- ``unlabeled`` (pretraining audio): KJV, else fortunes, else the rest of the
  labeled source, else the grammar.

Every sentence is normalised once (:func:`.textnorm.normalize_text`) and
appears in at most one role: valid and test sentences are never spoken in
training audio nor present in unpaired or LM text.
"""

from __future__ import annotations

import random
from typing import Iterator, Sequence

import attrs

from .sentence_grammar import generate_sentences
from .text_sources import SOURCE_CODES, available_sources, load_source
from .textnorm import normalize_text

#: (min, max) words per role.
WORD_LIMITS = {"labeled": (4, 20), "unpaired": (3, 25), "unlabeled": (5, 30)}


@attrs.frozen(kw_only=True)
class TextPools:
    """Sentences per role (normalised transcripts) and the sources each role drew from."""

    roles: dict[str, list[str]]
    sources: dict[str, list[str]]
    available: list[str]


def text_tag(available: Sequence[str]) -> str:
    """Short code of the text sources for corpus ids (``wfk``, or ``g`` without WordNet)."""
    codes = [SOURCE_CODES[s] for s in ("wordnet", "fortunes", "kjv") if s in available]
    if "wordnet" not in available:
        codes.insert(0, SOURCE_CODES["generator"])
    return "".join(codes)


class _Stream:
    """Shuffled, normalised, de-duplicated sentences of one source, consumed in order."""

    def __init__(self, name: str, raw: Iterator[str] | Sequence[str], seed: int):
        self.name = name
        if isinstance(raw, Sequence):
            raw = sorted(set(raw))
            random.Random(f"demo-text/{seed}/{name}").shuffle(raw)
            raw = iter(raw)
        self._raw = raw
        self.exhausted = False

    def take(self, n: int, limits: tuple[int, int], used: set[str]) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            sentence = next(self._raw, None)
            if sentence is None:
                self.exhausted = True
                break
            text = normalize_text(sentence)
            if text is None or text in used or not limits[0] <= text.count(" ") + 1 <= limits[1]:
                continue
            used.add(text)
            out.append(text)
        return out


def _take_from(streams: Sequence[_Stream], n: int, limits, used: set[str], *, alternate: bool,
               drew: list[str]) -> list[str]:
    """n sentences from the streams: round-robin (alternate) or one after another."""
    out: list[str] = []
    while len(out) < n and not all(s.exhausted for s in streams):
        live = [s for s in streams if not s.exhausted]
        active = live if alternate else live[:1]
        step = max(1, min(256, (n - len(out) + len(active) - 1) // len(active)))
        for stream in active:
            got = stream.take(min(step, n - len(out)), limits, used)
            if got and stream.name not in drew:
                drew.append(stream.name)
            out.extend(got)
            if len(out) >= n:
                break
    return out


def make_text_pools(seed: int, counts: dict[str, int], *, available: Sequence[str] | None = None
                    ) -> TextPools:
    """Draw ``counts[role]`` sentences for each role (valid, test, train, unpaired, unlabeled)."""
    available = list(available_sources() if available is None else available)
    streams = {name: _Stream(name, load_source(name), seed) for name in available}
    streams["generator"] = _Stream("generator", generate_sentences(seed), seed)
    labeled_source = streams["wordnet"] if "wordnet" in streams else streams["generator"]
    generator = streams["generator"]

    used: set[str] = set()
    roles: dict[str, list[str]] = {}
    sources: dict[str, list[str]] = {}

    def draw(role: str, kind: str, chain: list[_Stream], alternate: bool = False) -> None:
        drew: list[str] = []
        fallback = [generator] if generator not in chain else []
        got = _take_from(chain, counts.get(role, 0), WORD_LIMITS[kind], used, alternate=alternate,
                         drew=drew)
        if len(got) < counts.get(role, 0) and fallback:
            got += _take_from(fallback, counts[role] - len(got), WORD_LIMITS[kind], used,
                              alternate=False, drew=drew)
        roles[role], sources[role] = got, drew

    for role in ("valid", "test", "train"):
        draw(role, "labeled", [labeled_source])
    unpaired_chain = [labeled_source] + ([streams["fortunes"]] if "fortunes" in streams else [])
    draw("unpaired", "unpaired", unpaired_chain, alternate=True)
    unlabeled_chain = [streams[n] for n in ("kjv", "fortunes") if n in streams] + [labeled_source]
    draw("unlabeled", "unlabeled", list(dict.fromkeys(unlabeled_chain)))
    return TextPools(roles=roles, sources=sources, available=available)

