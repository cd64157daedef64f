"""The ``evaluate`` stage: decode a labelled split with each model and decoder; CER and WER.

The split comes from the stage's data source: waveforms (fairseq, kaldi,
lhotse, hf_dataset) or feature shards (``features``, for downstream models on
frozen features).

For every model (an earlier stage id or a checkpoint path) and every decoder,
it writes ``<stage dir>/<model>.<decoder>.tsv`` (per-utterance reference,
hypothesis and error counts) and adds a row to ``results.json``. With
``lm_text`` it first builds a word n-gram LM (Kneser-Ney ARPA) and a lexicon in
the stage directory, after checking that the LM text shares no sentence with
the evaluated transcripts; decoders whose ``lm`` / ``lexicon`` are ``auto`` use them
(``lexicon: auto`` beside an ARPA ``lm`` file makes the lexicon from that file's words).
``w2vrun evaluate`` (:mod:`w2v.plugins.ctc.commands`) runs the same functions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import attrs
import torch

from w2v.config import ComponentSpec, components, field, size
from w2v.errors import ConfigError, DataError
from w2v.interfaces import Stage

log = logging.getLogger("w2v")


@attrs.define(kw_only=True)
class EvaluateConfig:
    models: list[str] = field(help="stage ids of this recipe (or checkpoint paths) to evaluate")
    split: Literal["valid", "test"] = field("test", "the labelled split to decode")
    decoders: dict[str, ComponentSpec] = components(
        "decoder", "name -> decoder section, e.g. `{greedy: {name: ctc_greedy}}` (default: "
                   "greedy only)")
    lm_text: str | None = field(None, "text to build the word LM from (a path, or `CORPUS:lm`); "
                                      "decoders with `lm: auto` / `lexicon: auto` use it")
    lm_order: int = size(4, 1, 10, "n-gram order of the LM built from lm_text")


class EvaluateStage(Stage):
    """Decode a labelled split with each model and decoder; CER/WER table in results.json."""

    Config = EvaluateConfig

    def inputs(self, sections) -> dict[str, str | None]:
        """The decoded split, the LM text, and the LM / lexicon files the decoders name."""
        cfg = self.config
        found = sections.data.inputs((cfg.split,))
        if cfg.lm_text is not None:
            found["lm_text"] = cfg.lm_text
        for dname, spec in cfg.decoders.items():
            for key in ("lm", "lexicon"):
                path = getattr(spec.config, key, None)
                if path not in (None, "auto"):
                    found[f"decoders.{dname}.{key}"] = path
        return found

    def check(self, stage_id, sections, stage_ids) -> None:
        """Models are earlier stages or existing checkpoints; the split has labels; an
        ``auto`` LM or lexicon has an ``lm_text`` (or, for the lexicon, an ARPA ``lm``)."""
        import os

        from w2v.errors import did_you_mean

        cfg = self.config
        if not cfg.models:
            raise ConfigError("`models` is empty: nothing to evaluate.", key="models")
        earlier = list(stage_ids[:list(stage_ids).index(stage_id)])
        for name in cfg.models:
            if name in earlier:
                continue
            if name in stage_ids:
                raise ConfigError(f"model `{name}` is a stage that runs after this one.",
                                  key="models", hint=f"Move stage `{stage_id}` after `{name}`.")
            if not os.path.exists(name):
                raise ConfigError(f"model `{name}` is neither an earlier stage of this recipe "
                                  "nor a checkpoint path.", key="models",
                                  hint=did_you_mean(name, earlier, "stage ids"))
        if sections.data.labels is None:
            raise ConfigError("the evaluate stage scores transcripts, but `data.labels` is "
                              "null.", key="data.labels",
                              hint=f"Set `stages.{stage_id}.data.labels: ltr` (letters).")
        for dname, spec in cfg.decoders.items():
            config = spec.config
            for key in ("lm", "lexicon"):
                if getattr(config, key, None) != "auto" or cfg.lm_text is not None:
                    continue
                if key == "lexicon" and getattr(config, "lm", None) not in (None, "auto"):
                    continue                # the lexicon of the decoder's own ARPA file
                raise ConfigError(f"decoder `{dname}` ({spec.name}) asks for `{key}: auto`, but "
                                  "the stage has no `lm_text` to build it from.",
                                  key=f"{spec.key}.{key}",
                                  hint="Set `lm_text` (a text file, or `demo:lm`), or give the "
                                       f"{key} file.")

    def run(self, context) -> None:
        from w2v import load_pretrained
        from w2v.data.loader import resolve_corpus
        from w2v.data.sources import open_source
        from w2v.plugins.ctc.metrics import check_not_degenerate
        from w2v.plugins.ctc.transcribe import attach_dictionary

        cfg = self.config
        if not cfg.models:
            raise ConfigError("`models` is empty: nothing to evaluate.",
                              key=f"stages.{context.stage_id}.models")
        data = context.sections.data
        data_source = open_source(data, context=context)
        decoders = dict(cfg.decoders) or {"greedy": _greedy_spec()}
        lm_paths = self._build_lm(context, data, resolve_corpus) if cfg.lm_text else None
        stage_dir = Path(context.stage_dir)
        results = []
        for name in cfg.models:
            source = context.output_of(name) if name in context.plans else Path(name)
            model = attach_dictionary(load_pretrained(source), source=source).to("cpu").eval()
            dictionary = getattr(model, "dictionary", None)     # HF directories: vocab.json
            if dictionary is None or model.head is None:
                raise ConfigError(f"model `{name}` has no CTC head and dictionary to decode with.",
                                  key=f"stages.{context.stage_id}.models")
            refs, ids, lps = source_emissions(model, data_source, cfg.split, dictionary)
            for dname, spec in decoders.items():
                decoder = build_decoder(spec, lm_paths, dictionary, stage_dir)
                hyps = decode_utterances(decoder, lps)
                path = stage_dir / f"{name.replace('/', '_')}.{dname}.tsv"
                row = {"model": name, "decoder": dname, **lm_settings(decoder),
                       **score_hypotheses(refs, hyps, path, ids)}
                warning = check_not_degenerate(hyps)
                if warning:
                    row["warning"] = warning
                    log.warning("model `%s` with %s: %s", name, dname, warning)
                results.append(row)
                log.info("%-24s %-10s CER %5.1f%%  WER %5.1f%%", name, decoder_label(row),
                         100 * row["cer"], 100 * row["wer"])
        out = {"split": cfg.split, "results": results}
        if lm_paths:
            out["lm"] = lm_paths["report"]
        (stage_dir / "results.json").write_text(json.dumps(out, indent=2) + "\n")

    def _build_lm(self, context, data, resolve_corpus) -> dict:
        from w2v.data.dictionary import letters_to_words
        from w2v.data.loader import resolve_manifest
        from w2v.plugins.ctc.lm import read_lines

        text = resolve_corpus(self.config.lm_text, f"stages.{context.stage_id}.lm_text")
        held_out = {}
        for split in ("valid", "test"):
            if getattr(data, split) is None:
                continue
            manifest = Path(resolve_manifest(data, split))
            wrd, ltr = manifest.with_suffix(".wrd"), manifest.with_suffix(".ltr")
            if wrd.exists():
                held_out[split] = read_lines(wrd)
            elif ltr.exists():                  # letters only: their words are the transcripts
                held_out[split] = [letters_to_words(line) for line in read_lines(ltr)]
        return build_lm(text, context.stage_dir, self.config.lm_order, held_out,
                        evaluated=held_out.get(self.config.split))


# ----------------------------------------------------------------- shared with `w2vrun evaluate`


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

    from w2v.plugins.ctc.head import emissions

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
    utterances unless ``chunk_seconds`` (see :mod:`w2v.plugins.ctc.transcribe`)."""
    from w2v.plugins.ctc.transcribe import chunked_emissions

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
    from w2v.plugins.ctc.lm import arpa_vocabulary, oov_rate

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
    from w2v.plugins.ctc.lm import build_arpa

    arpa = Path(directory) / "lm.arpa"
    build_arpa(text, arpa, order, held_out=held_out)
    info = describe_lm(arpa, evaluated=evaluated)
    report = {"text": str(text), "order": order, "words": info["report"]["words"]}
    if evaluated is not None:
        report["oov_rate"] = info["report"]["oov_rate"]
    info["report"] = report
    return info


def _greedy_spec() -> ComponentSpec:
    from w2v.config.structure import structure_component

    return structure_component("decoder", {"name": "ctc_greedy"}, path="decoder")


def build_decoder(spec: ComponentSpec, lm_paths, dictionary, directory):
    """Build a decoder spec; ``lm: auto`` takes the LM of ``lm_paths`` (:func:`build_lm`,
    :func:`describe_lm`), ``lexicon: auto`` a lexicon of that LM's words (or of the words of
    the decoder's own ARPA ``lm``) written to ``directory``."""
    from w2v.plugins.ctc.lexicon import build_lexicon

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
    from w2v.plugins.ctc.metrics import char_edits, utterance_errors, word_edits

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
