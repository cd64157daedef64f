"""The ``select_gan`` stage: choose a wav2vec-U checkpoint without labels, then decode.

Every checkpoint the ``train_gan`` stage kept (``update_N.pt``, and its final
``model.pt``) decodes the ``split`` features (Viterbi: the best phone per segment,
repeats merged, silence dropped); the one with the lowest ``weighted_lm_ppl``
(phone-LM perplexity / vocabulary usage ** 2, fairseq's ``best_checkpoint_metric``)
is written as this stage's ``model.pt``. A swept ``train_gan`` (``sweep:``) offers the
checkpoints of every configuration, ranked together; ``selection.tsv`` names each one's
configuration. Labels, where the corpus has them
(``<manifest>.phn`` beside the manifest the features came from), give each
checkpoint's PER in ``selection.tsv`` but never take part in the choice. The
chosen model then decodes ``decode_splits``: ``<split>.hyp.phn`` and, with labels,
PER in ``results.json``, beside the PER of the checkpoint the valid labels would have
chosen (``oracle_choice``: how much the unsupervised choice costs). With a
``word_decoder`` (:mod:`.words`) it also decodes them to words, ``<split>.hyp.wrd``, with
WER where ``<manifest>.wrd`` (or ``.ltr``) exists; with a ``phone_decoder`` it decodes
phones with the phone LM too (beam search, no lexicon), ``<split>.hyp.lm.phn`` and
``per_lm``. Neither takes part in the choice.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Literal

import attrs
import torch

from w2v.config import ComponentSpec, choice, component, field, real, size
from w2v.errors import DataError
from w2v.interfaces import Batch, Stage

from w2v.plugins.stages.inputs import source_dir
from .selection import phone_error_rate, viterbi_phones, weighted_lm_perplexity
from .sweep import read_sweep
from .text import SILENCE
from .words import PhoneDecoding, WordDecoding

log = logging.getLogger("w2v")
_PERIODIC = re.compile(r"^update_(\d+)\.pt$")


@attrs.define(kw_only=True)
class SelectGanConfig:
    from_: str = field("gan", help="the train_gan stage whose checkpoints are compared")
    features: str = field("segment", "the stage (or directory) of the features it trained on")
    text: str = field("text", "the prepare_text stage (or directory): its phone LM and "
                              "dictionary")
    split: str = field("valid", "the split the unsupervised metric is computed on")
    decode_splits: list[str] = field(["test"], "splits the chosen model decodes")
    vocab_usage_power: float = real(2.0, 0.0, 10.0, "exponent of the vocabulary usage")
    batch_size: int = size(32, 1, 1 << 16, "utterances per forward")
    word_decoder: ComponentSpec | None = component(
        "decoder", None, "decode the chosen model to words too, e.g. `{name: ctc_beam, lexicon: "
                         "auto, lm: auto}` (`auto`: the text stage's lexicon.words.lst and "
                         "lm.words.arpa; the silence token is <SIL>); null: phones only")
    word_emissions: Literal["segments", "frames"] = choice(
        "segments", "what the word and phone decoders read: `segments`, one frame per JOIN "
                    "segment with a blank frame between; `frames`, every generator frame "
                    "with `<s>` as the blank (fairseq's w2vu_generate.py KenLM path)")
    phone_decoder: ComponentSpec | None = component(
        "decoder", None, "decode the chosen model's phones with the phone LM too (beside "
                         "Viterbi), e.g. `{name: ctc_beam, lexicon: null, lm: auto}` (`auto`: "
                         "the text stage's lm.phones.arpa): `<split>.hyp.lm.phn` and `per_lm`; "
                         "null: Viterbi only")
    blank_weight: float | None = real(None, None, None, "`frames` only: the blank's logit "
                                                        "(fairseq blank_mode set); null: the "
                                                        "generator's own")


class SelectGanStage(Stage):
    """Unsupervised checkpoint selection (weighted phone-LM perplexity), then decoding."""

    Config = SelectGanConfig

    def run(self, context) -> None:
        from w2v import load_pretrained
        from w2v.checkpoint_formats import MODEL_FILE, save_model
        from w2v.plugins.ctc.evaluation import lm_settings
        from w2v.plugins.ctc.lm import read_arpa
        from w2v.plugins.data.shards import load_features, read_meta

        cfg = self.config
        gan_dir = source_dir(cfg.from_, context, "from")
        features_dir = source_dir(cfg.features, context, "features")
        text_dir = source_dir(cfg.text, context, "text")
        lm = read_arpa(text_dir / "lm.phones.arpa")
        ckpt_root = context.run_dir / "checkpoints" / (cfg.from_ if cfg.from_ in context.plans
                                                       else gan_dir.name)
        candidates = _candidates(gan_dir, ckpt_root)
        model = load_pretrained(candidates[0].model_file)
        dictionary = model.dictionary
        inventory = len(dictionary) - dictionary.nspecial - int(SILENCE in dictionary)
        meta = read_meta(features_dir)
        valid = load_features(features_dir, cfg.split)
        refs = _labels(meta, cfg.split)

        rows = []
        for cand in candidates:
            model.load_state_dict(cand.state())
            hyps = decode(model, valid, dictionary, cfg.batch_size)
            score = weighted_lm_perplexity(hyps, lm.score, inventory, cfg.vocab_usage_power)
            per = phone_error_rate(hyps, refs) if refs is not None else None
            rows.append((cand, score, per))
            log.info("select_gan: %s weighted_lm_ppl %.2f (lm_ppl %.2f, vocab %.2f)%s",
                     cand.label, score.weighted_lm_ppl, score.lm_ppl, score.vocab_usage,
                     f", PER {per:.1f}" if per is not None else "")
        best = min(rows, key=lambda r: r[1].weighted_lm_ppl)[0]
        best_state = best.state()
        model.load_state_dict(best_state)
        out = Path(context.stage_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_table(out / "selection.tsv", rows, best)
        save_model(model, model.model_config, out / MODEL_FILE, dictionary=dictionary,
                   extra={"stage": context.stage_id, "chosen": best.checkpoint,
                          "configuration": best.configuration})
        results = {"chosen": best.checkpoint, "configuration": best.configuration,
                   "metric": "weighted_lm_ppl",
                   "weighted_lm_ppl": min(r[1].weighted_lm_ppl for r in rows), "splits": {}}
        labelled = [r for r in rows if r[2] is not None]
        oracle = min(labelled, key=lambda r: r[2]) if labelled else None
        if oracle is not None:   # how good the unsupervised choice is: what labels would pick
            results["oracle_choice"] = {"checkpoint": oracle[0].checkpoint,
                                        "configuration": oracle[0].configuration,
                                        "valid_per": oracle[2], "splits": {}}
        beams = {}
        for key, kind in (("word_decoder", WordDecoding), ("phone_decoder", PhoneDecoding)):
            spec = getattr(cfg, key)
            if spec is not None:
                beams[key] = kind.from_spec(spec, text_dir, dictionary,
                                            emissions=cfg.word_emissions,
                                            blank_weight=cfg.blank_weight)
                results[key] = {"name": spec.name, "emissions": cfg.word_emissions,
                                **lm_settings(beams[key].decoder)}
        words, phones_lm = beams.get("word_decoder"), beams.get("phone_decoder")
        for split in cfg.decode_splits:
            feats = load_features(features_dir, split)
            hyps = decode(model, feats, dictionary, cfg.batch_size)
            (out / f"{split}.hyp.phn").write_text("".join(" ".join(h) + "\n" for h in hyps))
            split_refs = _labels(meta, split)
            entry = {"utterances": len(hyps)}
            if split_refs is not None:
                entry["per"] = phone_error_rate(hyps, split_refs)
                entry["chance_per"] = chance_per(split_refs)
            if phones_lm is not None:
                lm_hyps = phones_lm.decode_all(model, feats, cfg.batch_size)
                (out / f"{split}.hyp.lm.phn").write_text(
                    "".join(" ".join(h) + "\n" for h in lm_hyps))
                if split_refs is not None:
                    entry["per_lm"] = phone_error_rate(lm_hyps, split_refs)
                    log.info("select_gan: %s phones with the phone LM, PER %.1f", split,
                             entry["per_lm"])
            if words is not None:
                manifest = meta.get("splits", {}).get(split, {}).get("manifest")
                entry.update(words.run_split(model, feats, manifest, out / f"{split}.hyp.wrd",
                                             cfg.batch_size))
            results["splits"][split] = entry
            if oracle is not None and split_refs is not None:
                model.load_state_dict(oracle[0].state())
                results["oracle_choice"]["splits"][split] = {"per": phone_error_rate(
                    decode(model, feats, dictionary, cfg.batch_size), split_refs)}
                model.load_state_dict(best_state)
            log.info("select_gan: %s decoded%s", split,
                     f", PER {entry['per']:.1f} (chance {entry['chance_per']:.1f})"
                     if "per" in entry else "")
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


@torch.inference_mode()
def decode(model, features, dictionary, batch_size: int) -> list[list[str]]:
    """Viterbi phones of every utterance of a :class:`FeatureSet`, in order."""
    model.eval()
    out: list[list[str]] = []
    for start in range(0, len(features), batch_size):
        rows = [torch.from_numpy(features.frames(r).astype("float32"))
                for r in range(start, min(start + batch_size, len(features)))]
        lengths = torch.tensor([len(x) for x in rows])
        x = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        res = model(Batch(source=x, lengths=lengths))
        for ids in viterbi_phones(res.logits, res.logit_lengths, dictionary):
            out.append([dictionary[i] for i in ids])
    return out


def chance_per(refs: list[list[str]]) -> float:
    """PER of always answering the most frequent reference phone (one per utterance)."""
    from collections import Counter

    counts = Counter(p for r in refs for p in r)
    if not counts:
        return math.nan
    top = counts.most_common(1)[0][0]
    return phone_error_rate([[top] for _ in refs], refs)


def _labels(meta: dict, split: str) -> list[list[str]] | None:
    """Reference phones of ``split`` (silence dropped) from ``<manifest>.phn``, or None."""
    manifest = meta.get("splits", {}).get(split, {}).get("manifest")
    if not manifest:
        return None
    path = Path(manifest).with_suffix(".phn")
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = meta["splits"][split].get("utterances")
    if expected is not None and len(lines) != expected:
        raise DataError(f"`{path}` has {len(lines)} lines but the features of `{split}` "
                        f"have {expected} utterances.")
    return [[p for p in line.split() if p not in (SILENCE, "sil", "|")] for line in lines]


@attrs.frozen
class Candidate:
    """One checkpoint ``select_gan`` scores: ``final`` (the sub-run's ``model.pt``) or
    ``update_N``, of the configuration ``configuration`` of a sweep (None: a single run).
    Its weights are read when scored, so a sweep's checkpoints are never all in memory."""

    configuration: str | None
    checkpoint: str
    path: Path
    model_file: Path

    @property
    def label(self) -> str:
        return self.checkpoint if self.configuration is None else \
            f"{self.configuration}/{self.checkpoint}"

    def state(self) -> dict[str, torch.Tensor]:
        from w2v.checkpoint_formats import read_blob
        from w2v.train.checkpoint import load_checkpoint

        if self.path == self.model_file:
            return read_blob(self.path)["state_dict"]
        return load_checkpoint(self.path)["model"]


def _candidates(gan_dir: Path, ckpt_root: Path) -> list[Candidate]:
    """Every checkpoint of the ``train_gan`` output ``gan_dir``: per configuration of its
    sweep (:func:`.sweep.read_sweep`), or of its one run, the final model then the kept
    ``update_N.pt`` of ``ckpt_root`` (``<run>/checkpoints/<stage>[/<configuration>]``)."""
    from w2v.checkpoint_formats import MODEL_FILE

    found = []
    for conf in read_sweep(gan_dir) or [None]:
        run = gan_dir if conf is None else gan_dir / conf
        ckpt_dir = ckpt_root if conf is None else ckpt_root / conf
        found.append(Candidate(conf, "final", run / MODEL_FILE, run / MODEL_FILE))
        if ckpt_dir.is_dir():
            for path in sorted(ckpt_dir.iterdir(), key=lambda p: p.name):
                if (m := _PERIODIC.match(path.name)):
                    found.append(Candidate(conf, f"update_{m.group(1)}", path, run / MODEL_FILE))
    return found


def _write_table(path: Path, rows, chosen: Candidate) -> None:
    lines = ["checkpoint\tweighted_lm_ppl\tlm_ppl\tvocab_usage\tper\tconfiguration\tchosen"]
    for cand, score, per in rows:
        lines.append(f"{cand.checkpoint}\t{score.weighted_lm_ppl:.3f}\t{score.lm_ppl:.3f}\t"
                     f"{score.vocab_usage:.3f}\t{'' if per is None else f'{per:.2f}'}\t"
                     f"{cand.configuration or ''}\t{'*' if cand == chosen else ''}")
    path.write_text("\n".join(lines) + "\n")
