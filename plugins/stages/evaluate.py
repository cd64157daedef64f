"""The ``evaluate`` stage: decode a labelled split with each model and decoder; CER and WER.

For every model (an earlier stage id or a checkpoint path) and every decoder,
it writes ``<stage dir>/<model>.<decoder>.tsv`` (per-utterance reference,
hypothesis and error counts) and adds a row to ``results.json``. With
``lm_text`` it first builds a word n-gram LM (Kneser-Ney ARPA) and a lexicon in
the stage directory, after checking that the LM text shares no sentence with
the evaluated transcripts; decoders whose ``lm`` / ``lexicon`` are ``auto`` use them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import attrs
import torch

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

    def __init__(self, config: EvaluateConfig):
        self.config = config

    @classmethod
    def from_config(cls, config, upstream=None, **context):
        return cls(config)

    def run(self, context) -> None:
        from w2v import load_pretrained
        from w2v.data.loader import build_dataset, resolve_corpus
        from w2v.plugins.ctc.metrics import check_not_degenerate

        cfg = self.config
        if not cfg.models:
            raise ConfigError("`models` is empty: nothing to evaluate.",
                              key=f"stages.{context.stage_id}.models")
        data = context.sections.data
        decoders = dict(cfg.decoders) or {"greedy": _greedy_spec()}
        lm_paths = self._build_lm(context, data, resolve_corpus) if cfg.lm_text else None
        results = []
        for name in cfg.models:
            source = context.output_of(name) if name in context.plans else Path(name)
            model = load_pretrained(source).to("cpu").eval()
            dictionary = getattr(model, "dictionary", None)
            if dictionary is None or model.head is None:
                raise ConfigError(f"model `{name}` has no CTC head and dictionary to decode with.",
                                  key=f"stages.{context.stage_id}.models")
            whole = attrs.evolve(data, pad=True, max_sample_size=1 << 31, max_tokens=1 << 31)
            dataset = build_dataset(whole, cfg.split, labels=True,
                                    dictionary=dictionary,
                                    min_samples=model.encoder.produces().receptive_field)
            refs, lps, lens = self._emissions(model, dataset, dictionary)
            for dname, spec in decoders.items():
                decoder = _build_decoder(spec, lm_paths, dictionary, context)
                hyps = []
                for lp, n in zip(lps, lens):
                    hyps.append(decoder.decode(lp[None, :n], torch.tensor([n]))[0].text)
                row = _score(name, dname, refs, hyps, Path(context.stage_dir))
                warning = check_not_degenerate(hyps)
                if warning:
                    row["warning"] = warning
                    log.warning("model `%s` with %s: %s", name, dname, warning)
                results.append(row)
                log.info("%-24s %-10s CER %5.1f%%  WER %5.1f%%", name, dname, 100 * row["cer"],
                         100 * row["wer"])
        out = {"split": cfg.split, "results": results}
        if lm_paths:
            out["lm"] = lm_paths["report"]
        (Path(context.stage_dir) / "results.json").write_text(json.dumps(out, indent=2) + "\n")

    @staticmethod
    @torch.inference_mode()
    def _emissions(model, dataset, dictionary):
        """Per-utterance CTC log-probs, one utterance at a time (exactly what a batch gives)."""
        from w2v.plugins.ctc.head import emissions

        refs, lps, lens = [], [], []
        for i in range(len(dataset)):
            item = dataset[i]
            if "bad" in item:
                raise item["bad"].to_error()
            refs.append(dictionary.words(item["target"].tolist()))
            lp, n = emissions(model, item["wave"][None])
            lps.append(lp[0])
            lens.append(lp.shape[1] if n is None else int(n[0]))
        return refs, lps, lens

    def _build_lm(self, context, data, resolve_corpus) -> dict:
        from w2v.data.loader import resolve_manifest
        from w2v.plugins.ctc.lm import arpa_vocabulary, build_arpa, oov_rate, read_lines

        text = resolve_corpus(self.config.lm_text, f"stages.{context.stage_id}.lm_text")
        held_out = {}
        for split in ("valid", "test"):
            if getattr(data, split) is None:
                continue
            wrd = Path(resolve_manifest(data, split)).with_suffix(".wrd")
            if wrd.exists():
                held_out[split] = read_lines(wrd)
        stage_dir = Path(context.stage_dir)
        arpa = stage_dir / "lm.arpa"
        build_arpa(text, arpa, self.config.lm_order, held_out=held_out)
        vocab = sorted(arpa_vocabulary(arpa) - {"<s>", "</s>", "<unk>"})
        report = {"text": str(text), "order": self.config.lm_order, "words": len(vocab)}
        if self.config.split in held_out:
            oov = oov_rate(held_out[self.config.split], vocab)
            report["oov_rate"] = round(oov.rate, 4)
        return {"arpa": str(arpa), "vocab": vocab, "report": report}


def _greedy_spec() -> ComponentSpec:
    from w2v.config.structure import structure_component

    return structure_component("decoder", {"name": "ctc_greedy"}, path="decoder")


def _build_decoder(spec: ComponentSpec, lm_paths, dictionary, context):
    from w2v.plugins.ctc.lexicon import build_lexicon

    cfg = spec.config
    changes = {}
    for key in ("lm", "lexicon"):
        if getattr(cfg, key, None) == "auto":
            if lm_paths is None:
                raise ConfigError(f"decoder `{spec.name}` asks for `{key}: auto`, but the stage "
                                  "has no `lm_text` to build it from.", key=spec.key)
            if key == "lm":
                changes["lm"] = lm_paths["arpa"]
            else:
                path = Path(context.stage_dir) / "lexicon.txt"
                build_lexicon(lm_paths["vocab"], dictionary, path, unspellable="skip")
                changes["lexicon"] = str(path)
    if changes:
        spec = spec.evolve(**changes)
    return spec.build(None, dictionary=dictionary)


def _score(model: str, decoder: str, refs, hyps, stage_dir: Path) -> dict:
    from w2v.plugins.ctc.metrics import char_edits, utterance_errors, word_edits

    c_err, c_tot = char_edits(refs, hyps)
    w_err, w_tot = word_edits(refs, hyps)
    rows = utterance_errors(refs, hyps)
    path = stage_dir / f"{model.replace('/', '_')}.{decoder}.tsv"
    with open(path, "w") as fh:
        fh.write("utterance\tword_errors\twords\tchar_errors\tchars\treference\thypothesis\n")
        for i, (r, ref, hyp) in enumerate(zip(rows, refs, hyps)):
            fh.write(f"{i}\t{r.word_errors}\t{r.ref_words}\t{r.char_errors}\t{r.ref_chars}\t"
                     f"{ref}\t{hyp}\n")
    return {"model": model, "decoder": decoder, "cer": c_err / max(c_tot, 1),
            "wer": w_err / max(w_tot, 1), "utterances": len(refs), "errors_file": path.name}
