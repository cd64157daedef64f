"""Label dictionaries: fairseq ``dict.ltr.txt`` files and Hugging Face CTC vocabularies.

fairseq ids: ``<s>`` = 0 (the CTC blank), ``<pad>`` = 1, ``</s>`` = 2,
``<unk>`` = 3, then the symbols of ``dict.ltr.txt`` in file order. Hugging
Face CTC vocabularies (``vocab.json``) put ``<pad>`` at 0 and use it as the
blank. ``|`` separates words in letter labels (``T H E | C A T |``).

Example::

    d = Dictionary.load("data/dict.ltr.txt")
    ids = d.encode("T H E | C A T |".split())
    letters_to_words(d.string(ids))   # 'THE CAT'
"""

from __future__ import annotations

import collections
import os
from typing import Iterable, Mapping, Sequence

from ..errors import DataError

#: Word boundary symbol of letter labels.
WORD_BOUNDARY = "|"
#: fairseq's flag for a dictionary row that re-adds an existing symbol.
OVERWRITE_FLAG = "#fairseq:overwrite"
_FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def letters_to_words(text: str, boundary: str = WORD_BOUNDARY) -> str:
    """Letter symbols to words: ``"T H E | C A T |"`` -> ``"THE CAT"`` (fairseq ``letter``)."""
    return " ".join(text.replace(" ", "").replace(boundary, " ").split())


def as_dictionary(value: "Dictionary | str | os.PathLike | None") -> "Dictionary | None":
    """A Dictionary given as itself or as the path of a fairseq dictionary file (None stays)."""
    if value is None or isinstance(value, Dictionary):
        return value
    return Dictionary.load(value)


class Dictionary:
    """Symbols <-> ids for CTC labels.

    Attributes:
        symbols: symbol of each id.
        counts: count of each id (from the dictionary file; 1 for specials).
        blank / pad / eos / bos / unk: special ids (``eos``/``bos`` may be None
            for vocabularies without them).
        word_boundary: the symbol between words (``|``).
    """

    def __init__(self, symbols: Sequence[str], *, blank: int, pad: int, unk: int,
                 eos: int | None = None, bos: int | None = None,
                 counts: Sequence[int] | None = None, nspecial: int = 0,
                 overwrite: Iterable[int] = (), word_boundary: str = WORD_BOUNDARY) -> None:
        self.symbols = list(symbols)
        self.counts = list(counts) if counts is not None else [1] * len(self.symbols)
        self.blank, self.pad, self.unk, self.eos, self.bos = blank, pad, unk, eos, bos
        self.nspecial = nspecial
        self.word_boundary = word_boundary
        self._overwrite = set(overwrite)   # ids written back with the overwrite flag
        self._index: dict[str, int] = {}
        for i, s in enumerate(self.symbols):  # a later (overwriting) row wins, as in fairseq
            self._index[s] = i
        for name in ("blank", "pad", "unk", "eos", "bos"):
            i = getattr(self, name)
            if i is not None and not 0 <= i < len(self.symbols):
                raise DataError(f"dictionary {name} id {i} is outside 0..{len(self.symbols) - 1}.")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_symbols(cls, symbols: Iterable[str], counts: Iterable[int] | None = None
                     ) -> "Dictionary":
        """fairseq layout: ``<s> <pad> </s> <unk>`` then ``symbols`` (no duplicates)."""
        symbols = list(symbols)
        dup = sorted({s for s, n in collections.Counter(symbols).items() if n > 1}
                     | set(symbols) & set(_FAIRSEQ_SPECIALS))
        if dup:
            raise DataError(f"dictionary symbols {', '.join(map(repr, dup))} appear twice "
                            "(or repeat a special symbol).")
        counts = list(counts) if counts is not None else [1] * len(symbols)
        return cls(list(_FAIRSEQ_SPECIALS) + symbols, counts=[1] * 4 + counts,
                   blank=0, bos=0, pad=1, eos=2, unk=3, nspecial=4)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dictionary":
        """Read a fairseq dictionary: lines ``symbol count [#fairseq:overwrite]``.

        A symbol already present (a special, or an earlier row) is an error
        unless its row carries ``#fairseq:overwrite``; then, as in fairseq, it
        gets a new id and the symbol maps to that id.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise DataError(f"dictionary `{path}` does not exist.") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"dictionary `{path}` is not UTF-8 text ({exc.reason}).") from None
        symbols, counts, overwrite = list(_FAIRSEQ_SPECIALS), [1] * 4, []
        seen = set(symbols)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            word, _, field = line.rstrip().rpartition(" ")
            flagged = field == OVERWRITE_FLAG
            if flagged:
                word, _, field = word.rpartition(" ")
            try:
                count = int(field)
            except ValueError:
                count = None
            if not word or count is None:
                raise DataError(f"expected `symbol count [{OVERWRITE_FLAG}]`, found `{line[:80]}`.",
                                where=where, hint="fairseq dictionaries have one symbol and its "
                                "count per line, e.g. `E 51860`.")
            if word in seen and not flagged:
                first = "a special symbol" if word in _FAIRSEQ_SPECIALS else "an earlier row"
                raise DataError(f"symbol `{word}` repeats {first}.", where=where,
                                hint=f"Remove the row, or add ` {OVERWRITE_FLAG}` to give it a "
                                     "new id (fairseq semantics).")
            if flagged:
                overwrite.append(len(symbols))
            seen.add(word)
            symbols.append(word)
            counts.append(count)
        return cls(symbols, counts=counts, blank=0, bos=0, pad=1, eos=2, unk=3, nspecial=4,
                   overwrite=overwrite)

    @classmethod
    def from_hf_vocab(cls, vocab: Mapping[str, int], *, pad_token: str = "<pad>",
                      unk_token: str = "<unk>", bos_token: str = "<s>", eos_token: str = "</s>",
                      word_delimiter: str = WORD_BOUNDARY) -> "Dictionary":
        """A Hugging Face CTC ``vocab.json`` mapping; ``pad_token`` is the blank (id 0 usually)."""
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in vocab.values()):
            raise DataError("expected a flat `{symbol: id}` vocabulary with integer ids "
                            "(multilingual per-language vocabularies: pass one language's map).")
        ids = sorted(vocab.values())
        if ids != list(range(len(vocab))):
            raise DataError(f"vocabulary ids must be 0..{len(vocab) - 1} without gaps or "
                            f"repeats; found {ids[:10]}{' ...' if len(ids) > 10 else ''}.")
        for token in (pad_token, unk_token):
            if token not in vocab:
                raise DataError(f"the vocabulary has no `{token}` entry.",
                                hint="Pass pad_token= / unk_token= naming its blank and unknown "
                                     "symbols.")
        symbols = sorted(vocab, key=vocab.__getitem__)
        return cls(symbols, blank=vocab[pad_token], pad=vocab[pad_token], unk=vocab[unk_token],
                   bos=vocab.get(bos_token), eos=vocab.get(eos_token),
                   word_boundary=word_delimiter)

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._index

    def __getitem__(self, i: int) -> str:
        return self.symbols[i]

    def __repr__(self) -> str:
        head = " ".join(self.symbols[:8]) + (" ..." if len(self) > 8 else "")
        return f"Dictionary({len(self)} symbols: {head}; blank={self.blank})"

    def index(self, symbol: str) -> int:
        """The id of ``symbol``; ``unk`` when it is not in the dictionary."""
        return self._index.get(symbol, self.unk)

    def encode(self, symbols: Iterable[str], strict: bool = False) -> list[int]:
        """Ids of ``symbols``; with ``strict``, unknown symbols raise a DataError naming them."""
        symbols = list(symbols)
        if strict:
            missing = list(dict.fromkeys(s for s in symbols if s not in self._index))
            if missing:
                raise DataError(f"symbols {', '.join(map(repr, missing[:10]))} are not in the "
                                f"dictionary ({len(self)} symbols).")
        return [self._index.get(s, self.unk) for s in symbols]

    def string(self, ids: Iterable[int], separator: str = " ") -> str:
        """Symbols of ``ids`` (list or 1-D tensor) joined by ``separator``; blank, pad, bos
        and eos are skipped."""
        skip = {self.blank, self.pad, self.bos, self.eos}
        return separator.join(self.symbols[int(i)] for i in ids if int(i) not in skip)

    def words(self, ids: Iterable[int]) -> str:
        """Letter ids to words: ``string`` then :func:`letters_to_words`. A dictionary
        without the word boundary symbol (phones, units) gives its symbols space-separated."""
        text = self.string(ids)
        return letters_to_words(text, self.word_boundary) if self.word_boundary in self else text

    # ------------------------------------------------------------------ writing
    def save(self, path: str | os.PathLike) -> None:
        """Write fairseq ``symbol count`` lines for the non-special symbols (what
        :meth:`load` reads back; overwrite flags are kept)."""
        if self.nspecial != len(_FAIRSEQ_SPECIALS) or self.symbols[:4] != list(_FAIRSEQ_SPECIALS):
            raise DataError("only dictionaries in fairseq layout (`<s> <pad> </s> <unk>` first) "
                            "can be written as a fairseq dictionary file.",
                            hint="Keep a Hugging Face vocabulary as its vocab.json.")
        with open(path, "w", encoding="utf-8") as f:
            for i in range(self.nspecial, len(self.symbols)):
                flag = f" {OVERWRITE_FLAG}" if i in self._overwrite else ""
                f.write(f"{self.symbols[i]} {self.counts[i]}{flag}\n")
