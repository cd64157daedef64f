"""Beam decoding of wav2vec-U outputs: to words with a lexicon and a word n-gram of the
unpaired text, or to phones with its phone n-gram, the generator's phone distributions
presented to the ``ctc_beam`` decoder (:class:`WordDecoding`, :class:`PhoneDecoding`).

Text side (written by ``prepare_text`` next to the phone files):

* ``lexicon.words.lst``: every word of the phonemised sentences with its phones
  (``WORD<TAB>p1 p2 ...``, the spelling the phone text uses, one per word), as the
  ``ctc_beam`` decoder's ``lexicon`` reads it. No word boundary symbol ends a
  spelling: the generator emits ``<SIL>`` between words only sometimes, and the
  decoder takes it, as its silence token, only between words;
* ``lm.words.arpa``: a Kneser-Ney word n-gram of the same sentences (the project's
  estimator), so every word of the LM has a spelling.

Audio side: the generator has no blank. Two presentations (``word_emissions``):

* ``segments`` (default): runs of equal argmax are averaged (JOIN, as in evaluation),
  each segment becomes one frame of phone log-probabilities in which the blank is
  never emitted, and a blank-only frame stands between segments (and at both ends):
  ``[b, s1, b, s2, b, ..., sN, b]``, ``2N + 1`` frames. The decoder reads one phone per
  segment, as Viterbi does, yet may give two adjacent segments the same phone.
* ``frames``: fairseq's ``w2vu_generate.py`` with its KenLM decoder: every generator
  frame as a CTC frame (no JOIN), the ``<s>`` column as the blank, its logit set to
  ``blank_weight`` (fairseq ``blank_mode: set``) or, with null, the generator's own.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import torch
from torch import Tensor

from w2v.data.dictionary import Dictionary, letters_to_words
from w2v.errors import ConfigError, DataError
from w2v.interfaces import Batch

from .segmentation import join_segments
from .text import SILENCE, Lexicon, normalise

log = logging.getLogger("w2v")

LEXICON_FILE = "lexicon.words.lst"
WORD_LM_FILE = "lm.words.arpa"
PHONE_LM_FILE = "lm.phones.arpa"
#: Score of a symbol that must never be emitted (finite, so log-adds stay defined).
NEVER = -1.0e30


# ------------------------------------------------------------------ text side
def spelled_sentences(sentences: Iterable[Sequence[str]], lexicon: Lexicon) -> list[list[str]]:
    """The sentences (word lists) whose every word has a spelling: those the phone text
    keeps (:func:`~.text.phonemise_with_silence` leaves the others out)."""
    return [list(s) for s in sentences if s and all(w in lexicon for w in s)]


def write_word_files(out: Path, sentences: Iterable[Sequence[str]], lexicon: Lexicon,
                     order: int) -> dict[str, int]:
    """Write :data:`LEXICON_FILE` and :data:`WORD_LM_FILE` (an ``order``-gram) of the
    spelled ``sentences`` to ``out``; returns ``{"lm_words", "lm_sentences"}``."""
    from w2v.plugins.ctc.lm import train_kneser_ney

    kept = spelled_sentences(sentences, lexicon)
    words = sorted({w for s in kept for w in s})
    (Path(out) / LEXICON_FILE).write_text(
        "".join(f"{w}\t{' '.join(lexicon[w])}\n" for w in words), encoding="utf-8")
    train_kneser_ney([" ".join(s) for s in kept], order=order).write_arpa(
        Path(out) / WORD_LM_FILE)
    return {"lm_words": len(words), "lm_sentences": len(kept)}


# ------------------------------------------------------------------ audio side
def segment_emissions(logits: Tensor, lengths: Tensor, dictionary: Dictionary
                      ) -> tuple[Tensor, Tensor]:
    """Generator ``logits`` ``[B, T, V]`` (``lengths`` ``[B]``) -> CTC emissions
    ``[B, 2S + 1, V]`` and their lengths ``[B]`` (``2 * segments + 1``).

    Odd frames: the log-softmax over the dictionary's non-special symbols of each JOIN
    segment (mean logits of a run of equal argmax); specials, the blank among them, get
    :data:`NEVER`. Even frames: the blank with log-probability 0, all else :data:`NEVER`.
    """
    segments, counts = join_segments(logits.float(), lengths, random_frame=False)
    b, s, v = segments.shape
    special = torch.arange(v, device=logits.device) < dictionary.nspecial
    phones = segments.masked_fill(special, NEVER).log_softmax(-1).masked_fill(special, NEVER)
    out = segments.new_full((b, 2 * s + 1, v), NEVER)
    out[..., dictionary.blank] = 0.0
    out[:, 1::2] = phones
    return out, 2 * counts + 1


def frame_emissions(logits: Tensor, lengths: Tensor, dictionary: Dictionary,
                    blank_weight: float | None = None) -> tuple[Tensor, Tensor]:
    """fairseq's presentation: every frame of ``logits`` ``[B, T, V]``, the blank's logit
    set to ``blank_weight`` (None: left as the generator's), log-softmax over the
    dictionary with the other specials :data:`NEVER`. Returns ``([B, T, V], lengths)``."""
    x = logits.float().clone()
    if blank_weight is not None:
        x[..., dictionary.blank] = blank_weight
    others = torch.arange(x.shape[-1], device=x.device) < dictionary.nspecial
    others[dictionary.blank] = False
    return x.masked_fill(others, NEVER).log_softmax(-1).masked_fill(others, NEVER), lengths


def generator_logits(model, features, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``(logits [B, T', V], lengths [B])`` of a :class:`FeatureSet`, in order, in batches."""
    model.eval()
    for start in range(0, len(features), batch_size):
        rows = [torch.from_numpy(features.frames(r).astype("float32"))
                for r in range(start, min(start + batch_size, len(features)))]
        lengths = torch.tensor([len(x) for x in rows])
        with torch.inference_mode():
            res = model(Batch(source=torch.nn.utils.rnn.pad_sequence(rows, batch_first=True),
                              lengths=lengths))
        yield res.logits, res.logit_lengths


class WordDecoding:
    """The generator's outputs -> words through a ``ctc_beam`` decoder over the phone
    dictionary (``<SIL>`` its silence token), with WER where references exist."""

    def __init__(self, decoder, dictionary: Dictionary,
                 emissions: Literal["segments", "frames"] = "segments",
                 blank_weight: float | None = None) -> None:
        self.decoder, self.dictionary = decoder, dictionary
        self.emissions, self.blank_weight = emissions, blank_weight

    @classmethod
    def from_spec(cls, spec, text_dir: Path, dictionary: Dictionary, **options
                  ) -> "WordDecoding":
        """Build ``spec`` (a decoder section); ``lexicon: auto`` / ``lm: auto`` take the text
        stage's :data:`LEXICON_FILE` / :data:`WORD_LM_FILE`, and the decoder's default
        silence token ``|`` becomes ``<SIL>``."""
        cfg = spec.config
        if not hasattr(cfg, "lexicon") or cfg.lexicon is None:
            raise ConfigError(f"the word decoder `{spec.name}` needs a lexicon to spell words in "
                              "phones.", key=spec.key,
                              hint="Use `{name: ctc_beam, lexicon: auto, lm: auto}`: the text "
                                   "stage's lexicon and word LM.")
        changes = {}
        for key, name in (("lexicon", LEXICON_FILE), ("lm", WORD_LM_FILE)):
            if getattr(cfg, key) == "auto":
                path = Path(text_dir) / name
                if not path.is_file():
                    raise DataError(f"`{path}` does not exist: the text stage wrote no word "
                                    "lexicon and LM.", key=f"{spec.key}.{key}",
                                    hint="Run the prepare_text stage again with "
                                         "`word_lm_order` set (`--stages text --force`).")
                changes[key] = str(path)
        if getattr(cfg, "sil_token", SILENCE) == "|" and "|" not in dictionary:
            changes["sil_token"] = SILENCE
        return cls(spec.evolve(**changes).build(None, dictionary=dictionary), dictionary,
                   **options)

    def emit(self, logits: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The CTC emissions and lengths the decoder reads for a batch of logits."""
        if self.emissions == "frames":
            return frame_emissions(logits, lengths, self.dictionary, self.blank_weight)
        return segment_emissions(logits, lengths, self.dictionary)

    def decode_logits(self, logits: Tensor, lengths: Tensor) -> list[str]:
        """The words of each row of generator ``logits`` ``[B, T, V]`` (``lengths`` ``[B]``)."""
        emissions, frames = self.emit(logits, lengths)
        return [h.text for h in self.decoder.decode(emissions, frames)]

    def decode(self, model, features, batch_size: int) -> list[str]:
        """The word hypothesis of every utterance of ``features``, in order."""
        return [text for logits, lengths in generator_logits(model, features, batch_size)
                for text in self.decode_logits(logits, lengths)]

    def run_split(self, model, features, manifest: str | None, hyp_path: Path,
                  batch_size: int) -> dict:
        """Decode a split, write one hypothesis a line to ``hyp_path``; returns
        ``{"wer"}`` (percent) when ``manifest`` has ``.wrd`` or ``.ltr`` references."""
        start = time.perf_counter()
        hyps = self.decode(model, features, batch_size)
        seconds = time.perf_counter() - start
        Path(hyp_path).write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        refs = word_references(manifest, len(hyps))
        entry = {} if refs is None else {"wer": word_error_rate(hyps, refs)}
        log.info("select_gan: %s words decoded in %.1f s%s", Path(hyp_path).name, seconds,
                 f", WER {entry['wer']:.1f}" if entry else "")
        return entry


class PhoneDecoding(WordDecoding):
    """The generator's outputs -> phones through a lexicon-free ``ctc_beam`` decoder whose LM
    is the text stage's phone n-gram (fairseq's ``w2vu_generate.py`` KenLM decoding over
    phones), in place of Viterbi's argmax."""

    @classmethod
    def from_spec(cls, spec, text_dir: Path, dictionary: Dictionary, **options
                  ) -> "PhoneDecoding":
        """Build ``spec`` (a decoder section, lexicon-free); ``lm: auto`` takes the text
        stage's :data:`PHONE_LM_FILE`, and the silence token ``|`` becomes ``<SIL>``."""
        cfg = spec.config
        if getattr(cfg, "lexicon", None) is not None:
            raise ConfigError(f"the phone decoder `{spec.name}` decodes phones, so it takes no "
                              "lexicon.", key=f"{spec.key}.lexicon",
                              hint="Use `{name: ctc_beam, lexicon: null, lm: auto}`: the text "
                                   "stage's phone LM.")
        changes = {}
        if getattr(cfg, "lm", None) == "auto":
            path = Path(text_dir) / PHONE_LM_FILE
            if not path.is_file():
                raise DataError(f"`{path}` does not exist: the text stage wrote no phone LM.",
                                key=f"{spec.key}.lm")
            changes["lm"] = str(path)
        if getattr(cfg, "sil_token", SILENCE) == "|" and "|" not in dictionary:
            changes["sil_token"] = SILENCE
        return cls(spec.evolve(**changes).build(None, dictionary=dictionary), dictionary,
                   **options)

    def decode_phones(self, logits: Tensor, lengths: Tensor) -> list[list[str]]:
        """The phones of each row of generator ``logits`` ``[B, T, V]`` (repeats merged,
        specials and ``<SIL>`` left out, as Viterbi's)."""
        emissions, frames = self.emit(logits, lengths)
        drop = set(range(self.dictionary.nspecial))
        if SILENCE in self.dictionary:
            drop.add(self.dictionary.index(SILENCE))
        out = []
        for h in self.decoder.decode(emissions, frames):
            ids = [i for i, _ in itertools.groupby(h.tokens)]
            out.append([self.dictionary[i] for i in ids if i not in drop])
        return out

    def decode_all(self, model, features, batch_size: int) -> list[list[str]]:
        """The phone hypothesis of every utterance of ``features``, in order."""
        return [phones for logits, lengths in generator_logits(model, features, batch_size)
                for phones in self.decode_phones(logits, lengths)]


def word_references(manifest: str | None, expected: int) -> list[str] | None:
    """Normalised reference words of each utterance from ``<manifest>.wrd`` (or the letters
    of ``<manifest>.ltr``), or None when neither exists."""
    if not manifest:
        return None
    for ext in (".wrd", ".ltr"):
        path = Path(manifest).with_suffix(ext)
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            if len(lines) != expected:
                raise DataError(f"`{path}` has {len(lines)} lines for {expected} utterances.")
            return [normalise(letters_to_words(line) if ext == ".ltr" else line)
                    for line in lines]
    return None


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Percent word edits over reference words."""
    from w2v.plugins.ctc.metrics import word_edits

    edits, total = word_edits(list(references), list(hypotheses))
    return 100.0 * edits / max(total, 1)
