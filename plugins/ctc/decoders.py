"""CTC decoders: greedy (best path) and beam search with a lexicon and a KenLM n-gram.

Both take emissions ``[B, T, V]`` (log-probabilities over the dictionary)
and frame lengths ``[B]``, and need the label dictionary, given as build
context: ``spec.build(upstream, dictionary=Dictionary.load("dict.ltr.txt"))``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Any

import attrs
import torch
from torch import Tensor

from w2v.config import field, real, size
from w2v.data.dictionary import Dictionary, as_dictionary
from w2v.errors import ConfigError, DataError
from w2v.interfaces import Decoder, Hypothesis, Signal


def greedy_tokens(emissions: Tensor, lengths: Tensor | None, blank: int
                  ) -> tuple[list[list[int]], Tensor]:
    """Best-path CTC decoding of a batch, vectorised.

    Args:
        emissions: ``[B, T, V]`` scores (log-probabilities or logits).
        lengths: ``[B]`` valid frames, or None.
        blank: blank id.

    Returns:
        ``(tokens, scores)``: per row the ids after collapsing repeats and dropping
        blanks; ``[B]`` summed best-frame scores over the valid frames.
    """
    best_scores, best = emissions.max(dim=-1)                      # [B, T]
    valid = torch.ones_like(best, dtype=torch.bool) if lengths is None else \
        torch.arange(best.shape[1], device=best.device)[None] < lengths.to(best.device)[:, None]
    keep = (best != blank) & valid
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    flat = best[keep].tolist()
    counts = keep.sum(dim=1).tolist()
    tokens, start = [], 0
    for n in counts:
        tokens.append(flat[start:start + n])
        start += n
    scores = (best_scores.float() * valid).sum(dim=1)
    return tokens, scores


@contextlib.contextmanager
def native_stderr_silenced():
    """Hold back what C++ code writes to file descriptor 2 (KenLM's loading progress bar);
    it is written out after all if the block raises."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:                     # no real stderr (embedded interpreters): nothing to do
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _dictionary_from_context(context: dict[str, Any], who: str) -> Dictionary:
    d = as_dictionary(context.get("dictionary"))
    if d is None:
        raise ConfigError(f"the {who} decoder needs the label dictionary.",
                          hint="Pass `dictionary=` when building it: a Dictionary or the path "
                               "of the fine-tuning dict.ltr.txt.")
    return d


@attrs.define(kw_only=True)
class GreedyConfig:
    """Best-path decoding has no settings: the blank and word boundary come from the
    dictionary."""


class CTCGreedyDecoder(Decoder):
    """Greedy (best-path) CTC: argmax per frame, collapse repeats, drop blanks, split on ``|``."""

    Config = GreedyConfig

    def __init__(self, config: GreedyConfig, dictionary: Dictionary) -> None:
        self.dictionary = dictionary

    @classmethod
    def from_config(cls, config: GreedyConfig, upstream: Signal | None = None, **context
                    ) -> "CTCGreedyDecoder":
        return cls(config, _dictionary_from_context(context, "ctc_greedy"))

    def decode(self, emissions: Tensor, lengths: Tensor | None = None) -> list[Hypothesis]:
        tokens, scores = greedy_tokens(emissions, lengths, self.dictionary.blank)
        out = []
        for toks, score in zip(tokens, scores.tolist()):
            text = self.dictionary.words(toks)
            out.append(Hypothesis(tokens=toks, text=text, words=text.split(), score=score))
        return out


@attrs.define(kw_only=True)
class BeamConfig:
    lexicon: str | None = field(None, "lexicon file (`WORD W O R D |` lines; see "
                                      "w2v.plugins.ctc.lexicon.build_lexicon), or null for "
                                      "lexicon-free decoding (then `lm` must be a token-level LM)")
    lm: str | None = field(None, "KenLM n-gram (ARPA or KenLM binary) over the lexicon's words, "
                                 "or null for no language model")
    beam: int = size(50, 1, 100_000, "hypotheses kept after each frame")
    beam_size_token: int | None = size(None, 1, 100_000, "tokens considered per frame "
                                                         "(null: all)")
    beam_threshold: float = real(50.0, 0.0, None, "prune hypotheses this far below the best")
    lm_weight: float = real(2.0, None, None, "language model weight")
    word_score: float = real(-1.0, None, None, "score added per word (fairseq default -1)")
    sil_score: float = real(0.0, None, None, "score added per silence (word boundary) token")
    unk_score: float = real(float("-inf"), None, None, "score of an out-of-lexicon word "
                                                       "(-inf: never)")
    sil_token: str = field("|", "the word boundary symbol of the dictionary")
    nbest: int = size(1, 1, 1000, "hypotheses returned per utterance")
    log_add: bool = field(False, "merge equal hypotheses by log-add instead of max")


class CTCBeamDecoder(Decoder):
    """Beam search with a lexicon and a word n-gram LM (torchaudio's flashlight-text decoder).

    Emissions are moved to CPU float32; utterances are decoded one after the other.
    """

    Config = BeamConfig

    def __init__(self, config: BeamConfig, dictionary: Dictionary) -> None:
        from torchaudio.models.decoder import ctc_decoder   # flashlight-text: `requires=`

        for key in ("lexicon", "lm"):
            path = getattr(config, key)
            if path is not None and not os.path.isfile(path):
                raise DataError(f"{key} file `{path}` does not exist.", key=key,
                                hint="w2v.plugins.ctc.lexicon.build_lexicon and "
                                     "w2v.plugins.ctc.lm.build_arpa make them.")
        if config.sil_token not in dictionary:
            raise ConfigError(f"the dictionary has no silence token `{config.sil_token}`.",
                              key="sil_token")
        self.config = config
        self.dictionary = dictionary
        with tempfile.TemporaryDirectory(prefix="w2v-ctc-") as tmp:
            lm_dict = None
            if config.lexicon is None and config.lm is not None:
                # Lexicon-free: the LM is queried with token ids, so its word list must be in
                # token order; torchaudio's own (built from a hash map) is not.
                lm_dict = os.path.join(tmp, "tokens.txt")
                with open(lm_dict, "w", encoding="utf-8") as fh:
                    fh.writelines(f"{symbol}\n" for symbol in dictionary.symbols)
            with native_stderr_silenced():        # KenLM's "Reading lm.arpa ----5---10..."
                self._decoder = ctc_decoder(
                    lexicon=config.lexicon, tokens=list(dictionary.symbols), lm=config.lm,
                    lm_dict=lm_dict, nbest=config.nbest, beam_size=config.beam,
                    beam_size_token=config.beam_size_token, beam_threshold=config.beam_threshold,
                    lm_weight=config.lm_weight, word_score=config.word_score,
                    unk_score=config.unk_score, sil_score=config.sil_score, log_add=config.log_add,
                    blank_token=dictionary.symbols[dictionary.blank], sil_token=config.sil_token,
                    unk_word=dictionary.symbols[dictionary.unk])

    @classmethod
    def from_config(cls, config: BeamConfig, upstream: Signal | None = None, **context
                    ) -> "CTCBeamDecoder":
        return cls(config, _dictionary_from_context(context, "ctc_beam"))

    def decode_nbest(self, emissions: Tensor, lengths: Tensor | None = None
                     ) -> list[list[Hypothesis]]:
        """The ``nbest`` best hypotheses of each utterance, best first."""
        if emissions.shape[-1] != len(self.dictionary):
            raise ValueError(f"emissions have {emissions.shape[-1]} classes but the dictionary "
                             f"has {len(self.dictionary)} symbols")
        x = emissions.detach().to("cpu", torch.float32).contiguous()
        lens = None if lengths is None else lengths.detach().to("cpu", torch.int32)
        out = []
        for results in self._decoder(x, lens):
            row = []
            for r in results:
                toks = [int(t) for t in r.tokens]
                text = " ".join(r.words) if self.config.lexicon else self.dictionary.words(toks)
                row.append(Hypothesis(tokens=toks, text=text, words=text.split(),
                                      score=float(r.score)))
            out.append(row)
        return out

    def decode(self, emissions: Tensor, lengths: Tensor | None = None) -> list[Hypothesis]:
        return [row[0] if row else Hypothesis(tokens=[], text="")
                for row in self.decode_nbest(emissions, lengths)]
