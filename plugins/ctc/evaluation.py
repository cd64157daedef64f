"""Decoding a labelled split and scoring it: what the ``evaluate`` stage
(:mod:`w2v.plugins.stages.evaluate`) and ``w2vrun evaluate`` (:mod:`.commands`) share.

Emissions of any data source (waveforms or feature frames), decoders built from a spec with
``lm: auto`` / ``lexicon: auto`` resolved against a built or given LM, the LM itself
(:func:`build_lm`, :func:`describe_lm`) and CER/WER with per-utterance error files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from w2v.config import ComponentSpec
from w2v.errors import ConfigError, DataError


def source_emissions(model, source, split: str, dictionary):
    """References, utterance ids and CTC log-probs ``[T_i, V]`` of every utterance of
    ``split`` of any data source: waveforms (whole utterances, no length filter but
    ``min_sample_size``) or feature frames (every row with frames)."""
    from w2v.data.sources import AudioSource

    if isinstance(source, AudioSource):
        dataset = source.dataset(split, labels=True, dictionary=dictionary, whole=True,
                                 min_samples=model.encoder.produces().receptive_field)
        return split_emissions(model, dataset, dictionary)
    if not hasattr(source, "dataset"):
        raise ConfigError(f"the `{source.config.name}` data source has no utterances to "
                          "decode.", key="data.name")
    return frame_emissions(model, source.dataset(split, dictionary=dictionary, whole=True),
                           dictionary)


@torch.inference_mode()
def frame_emissions(model, dataset, dictionary):
    """:func:`split_emissions` of a feature-frame dataset (``features`` source), one
    utterance at a time."""
    import numpy as np

    from .head import emissions

    features = dataset.features
    refs, ids, lps = [], [], []
    for row in dataset.rows.tolist():
        refs.append(dictionary.words(dataset.target(row).tolist()))
        ids.append(features.entries[row][0] if features.entries else str(row))
        frames = torch.from_numpy(np.asarray(features.frames(row), dtype=np.float32))
        lps.append(emissions(model, frames[None])[0][0].float())
    return refs, ids, lps


def split_emissions(model, dataset, dictionary, *, chunk_seconds: float | None = None,
                    context_seconds: float = 1.0, bad_hint: str | None = None):
    """References, utterance ids (manifest paths) and CTC log-probs ``[T_i, V]`` of every
    utterance of ``dataset``, one utterance at a time (exactly what a batch gives); whole
    utterances unless ``chunk_seconds`` (see :mod:`.chunking`)."""
    from .chunking import chunked_emissions

    refs, ids, lps = [], [], []
    manifest = dataset.manifest
    for i in range(len(dataset)):
        item = dataset[i]
        if "bad" in item:
            bad = item["bad"]
            raise bad.to_error() if bad_hint is None else \
                DataError(bad.describe(), where=bad.where, hint=bad_hint)
        refs.append(dictionary.words(item["target"].tolist()))
        row = int(dataset.rows[i])
        ids.append(manifest.relpath(row) if manifest.ids is None else manifest.ids[row])
        lps += chunked_emissions(model, [item["wave"]], chunk_seconds=chunk_seconds,
                                 context_seconds=context_seconds)
    return refs, ids, lps


def lm_settings(decoder) -> dict:
    """``{"lm_weight", "word_score"}`` of a decoder that uses a language model, else ``{}``
    (results rows carry them, so every LM row says which weights gave it)."""
    config = getattr(decoder, "config", None)
    if getattr(config, "lm", None) is None:
        return {}
    return {"lm_weight": config.lm_weight, "word_score": config.word_score}


def decoder_label(row: dict) -> str:
    """A results row's decoder as tables show it: ``lm (lm_weight 2, word_score -1)``."""
    if "lm_weight" not in row:
        return row["decoder"]
    return f"{row['decoder']} (lm_weight {row['lm_weight']:g}, word_score {row['word_score']:g})"


def decode_utterances(decoder, lps) -> list[str]:
    """The text of each utterance's emissions ``[T_i, V]``."""
    return [decoder.decode(lp[None], torch.tensor([lp.shape[0]]))[0].text for lp in lps]


def describe_lm(arpa, *, listable: bool = True, evaluated=None) -> dict:
    """What decoding needs to know about an LM file: ``{"arpa", "vocab", "report"}``.

    ``vocab`` (the words, for an ``auto`` lexicon) needs an ARPA file; with ``listable``
    a KenLM binary is a ConfigError. ``evaluated`` transcripts get an OOV rate."""
    from .lm import arpa_vocabulary, oov_rate

    arpa = str(arpa)
    with open(arpa, "rb") as fh:
        head = fh.read(4096)
    if not head.lstrip().startswith(b"\\data\\"):
        if not head.startswith(b"mmap lm "):
            raise DataError(f"`{arpa}` is neither an ARPA file nor a KenLM binary.",
                            hint="To estimate an LM from a text file, give the file as the LM "
                                 "text (`--lm-text`, or `lm_text` of an evaluate stage).")
        if listable:
            raise ConfigError(f"`{arpa}` is a binary KenLM model, whose words cannot be listed "
                              "to build a lexicon.",
                              hint="Give a lexicon (`WORD W O R D |` lines) with it, or the ARPA "
                                   "file.")
        return {"arpa": arpa, "vocab": None, "report": {"file": arpa}}
    vocab = sorted(arpa_vocabulary(arpa) - {"<s>", "</s>", "<unk>"})
    report = {"file": arpa, "words": len(vocab)}
    if evaluated is not None:
        report["oov_rate"] = round(oov_rate(evaluated, vocab).rate, 4)
    return {"arpa": arpa, "vocab": vocab, "report": report}


def build_lm(text, directory, order: int, held_out, *, evaluated=None) -> dict:
    """Estimate a Kneser-Ney ``order``-gram from ``text`` into ``directory/lm.arpa`` after
    checking that no ``held_out`` sentence occurs in it; :func:`describe_lm` of the result."""
    from .lm import build_arpa

    arpa = Path(directory) / "lm.arpa"
    build_arpa(text, arpa, order, held_out=held_out)
    info = describe_lm(arpa, evaluated=evaluated)
    report = {"text": str(text), "order": order, "words": info["report"]["words"]}
    if evaluated is not None:
        report["oov_rate"] = info["report"]["oov_rate"]
    info["report"] = report
    return info


def greedy_spec() -> ComponentSpec:
    from w2v.config.structure import structure_component

    return structure_component("decoder", {"name": "ctc_greedy"}, path="decoder")


def build_decoder(spec: ComponentSpec, lm_paths, dictionary, directory):
    """Build a decoder spec; ``lm: auto`` takes the LM of ``lm_paths`` (:func:`build_lm`,
    :func:`describe_lm`), ``lexicon: auto`` a lexicon of that LM's words (or of the words of
    the decoder's own ARPA ``lm``) written to ``directory``."""
    from .lexicon import build_lexicon

    cfg = spec.config
    changes = {}
    for key in ("lm", "lexicon"):
        if getattr(cfg, key, None) == "auto":
            if key == "lexicon" and lm_paths is None and cfg.lm not in (None, "auto"):
                if not Path(cfg.lm).is_file():
                    raise DataError(f"lm file `{cfg.lm}` does not exist.", key=f"{spec.key}.lm")
                lm_paths = describe_lm(cfg.lm)      # the words of the decoder's own ARPA file
            if lm_paths is None:
                raise ConfigError(f"decoder `{spec.name}` asks for `{key}: auto`, but the stage "
                                  "has no `lm_text` to build it from.", key=spec.key)
            if key == "lm":
                changes["lm"] = lm_paths["arpa"]
            else:
                if lm_paths["vocab"] is None:
                    raise ConfigError(f"decoder `{spec.name}` asks for `lexicon: auto`, but its "
                                      "LM is a KenLM binary whose words cannot be listed.",
                                      key=spec.key, hint="Give the lexicon file.")
                path = Path(directory) / "lexicon.txt"
                build_lexicon(lm_paths["vocab"], dictionary, path, unspellable="skip")
                changes["lexicon"] = str(path)
    if changes:
        spec = spec.evolve(**changes)
    return spec.build(None, dictionary=dictionary)


def score_hypotheses(refs, hyps, path: Path, ids=None) -> dict:
    """CER and WER of ``hyps``; writes the per-utterance errors (id, error counts, reference,
    hypothesis) to ``path`` as TSV."""
    from .metrics import char_edits, utterance_errors, word_edits

    c_err, c_tot = char_edits(refs, hyps)
    w_err, w_tot = word_edits(refs, hyps)
    rows = utterance_errors(refs, hyps)
    ids = range(len(refs)) if ids is None else ids
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("utterance\tword_errors\twords\tchar_errors\tchars\treference\thypothesis\n")
        for uid, r, ref, hyp in zip(ids, rows, refs, hyps):
            fh.write(f"{uid}\t{r.word_errors}\t{r.ref_words}\t{r.char_errors}\t{r.ref_chars}\t"
                     f"{ref}\t{hyp}\n")
    return {"cer": c_err / max(c_tot, 1), "wer": w_err / max(w_tot, 1), "utterances": len(refs),
            "errors_file": Path(path).name}
