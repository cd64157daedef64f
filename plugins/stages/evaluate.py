"""The ``evaluate`` stage: decode a labelled split with each model and decoder; CER and WER
(and PER, the token error rate over phones, for ``labels: phn``).

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
``w2vrun evaluate`` (:mod:`w2v.plugins.ctc.commands`) runs the same functions
(:mod:`w2v.plugins.ctc.evaluation`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import attrs

from w2v.config import ComponentSpec, components, field, size
from w2v.errors import ConfigError
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
        from w2v.plugins.ctc.evaluation import (build_decoder, decode_utterances, decoder_label,
                                                greedy_spec, lm_settings, score_hypotheses,
                                                source_emissions)
        from w2v.plugins.ctc.metrics import check_not_degenerate
        from w2v.plugins.ctc.transcribe import attach_dictionary

        cfg = self.config
        if not cfg.models:
            raise ConfigError("`models` is empty: nothing to evaluate.",
                              key=f"stages.{context.stage_id}.models")
        data = context.sections.data
        data_source = open_source(data, context=context)
        decoders = dict(cfg.decoders) or {"greedy": greedy_spec()}
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
            weights = layer_weights(model)
            for dname, spec in decoders.items():
                decoder = build_decoder(spec, lm_paths, dictionary, stage_dir)
                hyps = decode_utterances(decoder, lps)
                path = stage_dir / f"{name.replace('/', '_')}.{dname}.tsv"
                row = {"model": name, "decoder": dname, **lm_settings(decoder),
                       **score_hypotheses(refs, hyps, path, ids), **weights}
                if data.labels == "phn":     # phones are the words here: WER is the PER
                    row["per"] = row["wer"]
                warning = check_not_degenerate(hyps)
                if warning:
                    row["warning"] = warning
                    log.warning("model `%s` with %s: %s", name, dname, warning)
                results.append(row)
                if "per" in row:
                    log.info("%-24s %-10s PER %5.1f%%", name, decoder_label(row),
                             100 * row["per"])
                else:
                    log.info("%-24s %-10s CER %5.1f%%  WER %5.1f%%", name, decoder_label(row),
                             100 * row["cer"], 100 * row["wer"])
        out = {"split": cfg.split, "results": results}
        if lm_paths:
            out["lm"] = lm_paths["report"]
        (stage_dir / "results.json").write_text(json.dumps(out, indent=2) + "\n")

    def _build_lm(self, context, data, resolve_corpus) -> dict:
        from w2v.data.dictionary import letters_to_words
        from w2v.data.loader import resolve_manifest
        from w2v.plugins.ctc.evaluation import build_lm
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


def layer_weights(model) -> dict:
    """``{"layer_weights": {hidden state: weight}}`` for a head over weighted hidden states
    (``layers: weighted``), else ``{}``."""
    mixer = getattr(model.head, "layer_weights", None)
    if mixer is None:
        return {}
    weights = mixer.normalized().tolist()
    return {"layer_weights": dict(zip(model.hidden_state_names(), weights))}
