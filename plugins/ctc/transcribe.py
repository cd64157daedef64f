"""Transcribing audio with a CTC model: ``model.transcribe(wave)`` and what it is made of.

Long audio is decoded from chunked emissions (:mod:`.chunking` says what chunking
changes); decoders are greedy, or a beam search over a word LM built as the
``evaluate`` stage builds it (:mod:`.evaluation`).

Python API::

    model = w2v.load_pretrained("runs/base_10m/finetune")
    model.transcribe(wave)                           # 'THE CAT SAT' (wave: [S] at 16 kHz)
    model.transcribe(["a.wav", "b.flac"])            # ['...', '...']
    model.transcribe("talk.wav", lm="4-gram.arpa")   # lexicon built from the ARPA's words
    decoder, _ = lm_decoder(model, lm="4-gram.arpa") # build once, reuse for many calls
    model.transcribe(waves, decoder=decoder)

    fairseq = w2v.load_pretrained("wav2vec_small_10m.pt")      # fine-tuned, no dictionary:
    attach_dictionary(fairseq, "dict.ltr.txt").transcribe(wave)
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Sequence

from torch import nn

from w2v.errors import ConfigError, DataError

from .chunking import (DEFAULT_BATCH_SECONDS, as_waves, chunked_emissions, is_single,
                       require_ctc_head)


# --------------------------------------------------------------------------- decoders


def model_dictionary(model: nn.Module):
    """The model's label dictionary, checked against its head."""
    require_ctc_head(model)
    dictionary = getattr(model, "dictionary", None)
    if dictionary is None:
        raise ConfigError("the model carries no label dictionary to turn its outputs into text.",
                          hint="Pass the fine-tuning dictionary: `--dictionary dict.ltr.txt` "
                               "(in Python: w2v.plugins.ctc.transcribe.attach_dictionary(model, "
                               "'dict.ltr.txt')).")
    size = getattr(model.head, "vocab_size", None)
    if size is not None and size != len(dictionary):
        raise ConfigError(f"the dictionary has {len(dictionary)} symbols but the model's CTC "
                          f"head has {size} outputs.",
                          hint="Use the dict.ltr.txt the model was fine-tuned with.")
    return dictionary


def load_dictionary(path: str | os.PathLike):
    """A label dictionary from a fairseq ``dict.ltr.txt`` or a Hugging Face ``vocab.json``
    (with the special tokens of the ``tokenizer_config.json`` beside it, if any)."""
    import json

    from w2v.data.dictionary import Dictionary

    path = os.fspath(path)
    if not path.endswith(".json"):
        return Dictionary.load(path)
    config_file = os.path.join(os.path.dirname(path), "tokenizer_config.json")
    config = {}
    if os.path.isfile(config_file):
        with open(config_file, encoding="utf-8") as fh:
            config = json.load(fh)
    names = {"pad_token": "pad_token", "unk_token": "unk_token", "bos_token": "bos_token",
             "eos_token": "eos_token", "word_delimiter": "word_delimiter_token"}
    tokens = {mine: config[theirs] for mine, theirs in names.items()
              if isinstance(config.get(theirs), str)}
    try:
        with open(path, encoding="utf-8") as fh:
            vocab = json.load(fh)
    except ValueError as exc:
        raise DataError(f"`{path}` is not a JSON vocabulary ({exc}).") from None
    return Dictionary.from_hf_vocab(vocab, **tokens)


def attach_dictionary(model: nn.Module, dictionary=None, source: str | os.PathLike | None = None
                      ) -> nn.Module:
    """Give ``model`` its label dictionary: ``dictionary`` (a Dictionary or a file for
    :func:`load_dictionary`) when given, else, for a model without one, the ``vocab.json`` of
    the Hugging Face directory ``source`` it was loaded from. Returns ``model``."""
    if dictionary is not None:
        model.dictionary = dictionary if not isinstance(dictionary, (str, os.PathLike)) \
            else load_dictionary(dictionary)
    elif getattr(model, "dictionary", None) is None and source is not None:
        vocab = os.path.join(os.fspath(source), "vocab.json")
        if os.path.isdir(os.fspath(source)) and os.path.isfile(vocab):
            model.dictionary = load_dictionary(vocab)
    return model


def lm_decoder(model_or_dictionary, *, lm: str | os.PathLike | None = None,
               lexicon: str | os.PathLike | None = None, lm_text: str | os.PathLike | None = None,
               order: int = 4, lexicon_free: bool = False,
               directory: str | os.PathLike | None = None,
               held_out: dict[str, Sequence[str]] | None = None,
               evaluated: Sequence[str] | None = None, **beam_options):
    """A ``ctc_beam`` decoder over a word LM, built the way the ``evaluate`` stage builds one.

    Args:
        model_or_dictionary: a fine-tuned model or its label dictionary.
        lm: an ARPA file (its words make the lexicon unless ``lexicon`` is given) or a
            KenLM binary (then ``lexicon`` is needed).
        lexicon: ``WORD W O R D |`` lines; alone (no ``lm``), lexicon-constrained search.
        lm_text: estimate a Kneser-Ney ``order``-gram from this text file instead of ``lm``
            (no sentence of ``held_out`` may occur in it).
        lexicon_free: decode letters without a lexicon (``lm`` must be a letter-level LM).
        directory: where the built LM / lexicon go (default: a temporary directory,
            removed once the decoder has read them).
        evaluated: transcripts to report the LM's OOV rate on.
        beam_options: other ``ctc_beam`` fields (``beam``, ``lm_weight``, ``word_score``, ...;
            fairseq's defaults 50, 2, -1).

    Returns:
        ``(decoder, lm_info)``: the decoder and what ``evaluate`` reports about the LM
        (None without one).
    """
    from w2v.config.structure import structure_component
    from .evaluation import build_decoder, build_lm, describe_lm

    dictionary = model_dictionary(model_or_dictionary) if isinstance(model_or_dictionary,
                                                                     nn.Module) \
        else model_or_dictionary
    if lm is not None and lm_text is not None:
        raise ConfigError("give either an LM file or a text to estimate one from, not both.")
    if lm is None and lm_text is None and lexicon is None:
        raise ConfigError("a beam decoder needs an LM (`lm` / `lm_text`) or a lexicon.")
    for what, path in (("LM", lm), ("lexicon", lexicon), ("LM text", lm_text)):
        if path is not None and not os.path.isfile(path):
            raise DataError(f"{what} file `{os.fspath(path)}` does not exist.",
                            hint="Check the path.")
    if directory is None:             # the decoder holds the LM and lexicon once built
        with tempfile.TemporaryDirectory(prefix="w2v-lm-") as tmp:
            return lm_decoder(dictionary, lm=lm, lexicon=lexicon, lm_text=lm_text, order=order,
                              lexicon_free=lexicon_free, directory=tmp, held_out=held_out,
                              evaluated=evaluated, **beam_options)
    lm_info = None
    if lm_text is not None:
        lm_info = build_lm(lm_text, directory, order, held_out or {}, evaluated=evaluated)
    elif lm is not None:
        lm_info = describe_lm(lm, listable=lexicon is None and not lexicon_free,
                              evaluated=evaluated)
    spec = {"name": "ctc_beam", **beam_options}
    if lm_info is not None:
        spec["lm"] = "auto"
    if lexicon is not None:
        spec["lexicon"] = os.fspath(lexicon)
    elif not lexicon_free:
        spec["lexicon"] = "auto"
    decoder = build_decoder(structure_component("decoder", spec, path="decoder"), lm_info,
                            dictionary, directory)
    return decoder, lm_info


# --------------------------------------------------------------------------- transcribe


def transcribe(model: nn.Module, waves: Any, *, decoder=None, lm: str | os.PathLike | None = None,
               lexicon: str | os.PathLike | None = None, chunk_seconds: float | None = 30.0,
               context_seconds: float = 1.0, batch_seconds: float = DEFAULT_BATCH_SECONDS,
               sample_rate: int | None = None) -> str | list[str]:
    """The text of ``waves``: one string for one utterance, a list for a batch or a list.

    Args:
        model: a fine-tuned model (CTC head and ``model.dictionary``), e.g. from
            :func:`w2v.load_pretrained`. ``model.transcribe(...)`` calls this.
        waves: ``[S]`` (one utterance) or ``[B, S]`` float waveform(s), an audio file path,
            or a list of these (see :func:`~w2v.plugins.ctc.chunking.as_waves`).
        decoder: anything with ``decode(emissions [B, T, V], lengths [B])`` returning
            hypotheses with ``.text`` (see :func:`lm_decoder`); default greedy.
        lm / lexicon: build a beam decoder for this call (:func:`lm_decoder`); build it
            once with :func:`lm_decoder` instead when transcribing many times.
        chunk_seconds / context_seconds: chunking of long audio (module docstring);
            ``chunk_seconds=None`` decodes whole utterances.
        batch_seconds: audio per forward pass when batching equal-length pieces.
        sample_rate: rate of the given tensors (default: the model's).
    """
    from .decoders import CTCGreedyDecoder
    from .evaluation import decode_utterances

    dictionary = model_dictionary(model)
    if decoder is not None and (lm is not None or lexicon is not None):
        raise ConfigError("pass either a decoder or `lm` / `lexicon`, not both.")
    if decoder is None and (lm is not None or lexicon is not None):
        decoder, _ = lm_decoder(dictionary, lm=lm, lexicon=lexicon)
    if decoder is None:
        decoder = CTCGreedyDecoder(CTCGreedyDecoder.Config(), dictionary)
    field = model.encoder.produces().receptive_field
    texts = decode_utterances(decoder, chunked_emissions(
        model, as_waves(waves, model.sample_rate, input_rate=sample_rate, min_samples=field),
        chunk_seconds=chunk_seconds, context_seconds=context_seconds,
        batch_seconds=batch_seconds))
    return texts[0] if is_single(waves) else texts


__all__ = ["attach_dictionary", "lm_decoder", "load_dictionary", "model_dictionary", "transcribe"]
