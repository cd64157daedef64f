"""A w2v label dictionary as Hugging Face ``Wav2Vec2CTCTokenizer`` files.

Hugging Face's CTC tokenizer decodes by collapsing repeats, dropping its
``pad_token`` (the CTC blank) and turning ``word_delimiter_token`` into a
space. The exported model's ``lm_head`` rows stay in the dictionary's order,
so the tokenizer only renames ids, never moves them:

* fairseq layout (``<s> <pad> </s> <unk>`` then ``dict.ltr.txt``): id 0 (``<s>``,
  fairseq's blank) is named ``<pad>`` and id 1 (fairseq's ``<pad>``) ``<s>``,
  as Hugging Face's own fairseq conversion does (``facebook/wav2vec2-base-960h``
  has exactly this ``vocab.json``);
* any other dictionary keeps its symbols; the blank's symbol is the ``pad_token``.

``|`` stays the word delimiter; a dictionary without it (phones, units) gets
Hugging Face's phoneme CTC tokenizer, which separates symbols by spaces. Example::

    files = write_tokenizer(Dictionary.load("dict.ltr.txt"), "export_dir")
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import attrs

from w2v.data.dictionary import Dictionary
from w2v.errors import UserError

#: fairseq's special symbols, in id order, and the names Hugging Face gives those ids.
_FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_HF_NAMES = ("<pad>", "<s>", "</s>", "<unk>")

TOKENIZER_FILES = ("vocab.json", "tokenizer_config.json", "special_tokens_map.json")


@attrs.frozen(kw_only=True)
class HFVocabulary:
    """``vocab`` (symbol -> id, in id order) and the tokenizer's special tokens (None when
    the dictionary has no such symbol)."""

    vocab: dict[str, int]
    pad_token: str
    unk_token: str
    bos_token: str | None
    eos_token: str | None
    word_delimiter_token: str

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.vocab[token]


def hf_vocabulary(dictionary: Dictionary) -> HFVocabulary:
    """The Hugging Face names of ``dictionary``'s ids (see the module docstring).

    Raises:
        UserError: a symbol appears twice (fairseq ``#fairseq:overwrite`` rows): a
            ``vocab.json`` maps each symbol to one id.
    """
    names = list(dictionary.symbols)
    specials = {"blank": dictionary.blank, "bos": dictionary.bos, "eos": dictionary.eos,
                "unk": dictionary.unk}
    if names[:4] == list(_FAIRSEQ_SPECIALS) and specials == {"blank": 0, "bos": 0, "eos": 2,
                                                             "unk": 3}:
        names[:4] = _HF_NAMES
        bos, eos = "<s>", "</s>"
    else:
        bos = names[dictionary.bos] if dictionary.bos not in (None, dictionary.blank) else None
        eos = names[dictionary.eos] if dictionary.eos is not None else None
    repeated = [s for s, n in collections.Counter(names).items() if n > 1]
    if repeated:
        raise UserError(f"the label dictionary repeats the symbols "
                        f"{', '.join(map(repr, repeated[:5]))} (fairseq `#fairseq:overwrite` "
                        "rows), and a Hugging Face vocab.json maps each symbol to one id.",
                        hint="Export with a dictionary whose symbols are distinct.")
    return HFVocabulary(vocab={s: i for i, s in enumerate(names)},
                        pad_token=names[dictionary.blank], unk_token=names[dictionary.unk],
                        bos_token=bos, eos_token=eos,
                        word_delimiter_token=dictionary.word_boundary)


def tokenizer_config(vocabulary: HFVocabulary) -> dict[str, Any]:
    """``tokenizer_config.json`` with w2v's text conventions (no lower-casing, no clean-up of
    spaces before punctuation): Wav2Vec2CTCTokenizer for letters with a word delimiter;
    for a dictionary without one (phones, units), Wav2Vec2PhonemeCTCTokenizer without a
    phonemizer, which joins symbols with spaces as w2v does."""
    common = {**special_tokens(vocabulary), "do_lower_case": False,
              "clean_up_tokenization_spaces": False}
    if vocabulary.word_delimiter_token not in vocabulary.vocab:
        return {"tokenizer_class": "Wav2Vec2PhonemeCTCTokenizer", **common,
                "do_phonemize": False, "phone_delimiter_token": " ",
                "word_delimiter_token": None}
    return {"tokenizer_class": "Wav2Vec2CTCTokenizer", **common,
            "word_delimiter_token": vocabulary.word_delimiter_token,
            "replace_word_delimiter_char": " "}


def special_tokens(vocabulary: HFVocabulary) -> dict[str, str]:
    """``special_tokens_map.json``: the special tokens the vocabulary has."""
    tokens = {"bos_token": vocabulary.bos_token, "eos_token": vocabulary.eos_token,
              "unk_token": vocabulary.unk_token, "pad_token": vocabulary.pad_token}
    return {k: v for k, v in tokens.items() if v is not None}


def write_tokenizer(dictionary: Dictionary, directory: str | Path) -> HFVocabulary:
    """Write :data:`TOKENIZER_FILES` for ``dictionary`` into ``directory``; returns the
    vocabulary written (its ids equal the dictionary's)."""
    vocabulary = hf_vocabulary(dictionary)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, content in (("vocab.json", vocabulary.vocab),
                          ("tokenizer_config.json", tokenizer_config(vocabulary)),
                          ("special_tokens_map.json", special_tokens(vocabulary))):
        (out / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n",
                                encoding="utf-8")
    return vocabulary
