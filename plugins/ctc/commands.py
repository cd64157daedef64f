"""``w2vrun transcribe`` and ``w2vrun evaluate``: a fine-tuned CTC model on audio files.

    w2vrun transcribe CHECKPOINT AUDIO... [--dictionary dict.ltr.txt]
                      [--lm LM.arpa|LM.bin [--lexicon LEX] | --lm-text TEXT | --lexicon LEX]
                      [--lm-weight 2 --word-score -1 --beam 50] [--chunk-seconds 30] [--device]
    w2vrun evaluate CHECKPOINT MANIFEST [--labels ltr] [--dictionary ...]
                    [--lm ... | --lm-text ...] [--out DIR]

``CHECKPOINT`` is anything :func:`w2v.load_pretrained` reads: a w2v run or stage
directory (``runs/base_10m/finetune``), a ``model.pt``, a fine-tuned fairseq
``.pt`` (with ``--dictionary``) or a Hugging Face directory.

Decoding is greedy unless a language model or lexicon is given; the beam
decoder is built exactly as the ``evaluate`` stage builds it
(:mod:`.evaluation`): ``--lm`` takes an ARPA file (the lexicon
is made from its words unless ``--lexicon`` is given) or a KenLM binary (with
``--lexicon``); ``--lm-text`` estimates a Kneser-Ney ``--lm-order``-gram first
(``evaluate``: after checking that no evaluated transcript occurs in the text).

``transcribe`` prints ``path<TAB>text`` per file (a ``.tsv`` manifest stands for
its files); long files are decoded in chunks (``--chunk-seconds``). ``evaluate``
decodes whole utterances (unless ``--chunk-seconds``), prints a CER/WER table
(greedy, and the beam decoder when asked for) and writes, in ``--out`` (default
``runs/evaluate-<checkpoint name>``), ``<manifest name>.<decoder>.tsv``
(per-utterance errors) and ``results.json``. Exit codes: 0 done, 2 a user error
(a missing file, a checkpoint without a CTC head, a bad manifest or labels),
1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from w2v.errors import ConfigError, DataError, UserError

TRANSCRIBE_HELP = ("Transcribe audio files with a fine-tuned CTC model (greedy, or beam search "
                   "with a lexicon and a KenLM n-gram).")
EVALUATE_HELP = ("CER/WER of a fine-tuned CTC model on a labelled manifest; per-utterance errors "
                 "written to a run directory.")

_CHECKPOINT_HINT = ("Pass a fine-tuned model: a w2v run or stage directory (runs/NAME/finetune), "
                    "its model.pt, a fine-tuned fairseq .pt (with `--dictionary dict.ltr.txt`) or "
                    "a Hugging Face model directory.")

_BAD_LINE_HINT = ("Fix or remove that line of `{manifest}` and its label line (labels must use "
                  "the symbols of the model's dictionary).")


# --------------------------------------------------------------------------- shared arguments


def _add_model_arguments(p: argparse.ArgumentParser, chunk_default: float,
                         batching: bool = True) -> None:
    p.add_argument("--dictionary", help="label dictionary (fairseq dict.ltr.txt or Hugging Face "
                                        "vocab.json); needed for fairseq checkpoints, which "
                                        "carry none")
    p.add_argument("--chunk-seconds", type=float, default=chunk_default,
                   help="longer audio runs in chunks of this length whose emissions are joined "
                        f"before decoding; 0 decodes whole files (default {chunk_default:g})")
    p.add_argument("--context-seconds", type=float, default=1.0,
                   help="extra audio each chunk sees on both sides, its frames dropped "
                        "(default 1)")
    if batching:
        p.add_argument("--batch-seconds", type=float, default=240.0,
                       help="audio per forward pass when batching chunks of equal length "
                            "(default 240)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when "
                                                  "available)")


def _add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    lm = p.add_mutually_exclusive_group()
    lm.add_argument("--lm", help="word n-gram LM: ARPA (lexicon made from its words unless "
                                 "--lexicon is given) or KenLM binary (needs --lexicon)")
    lm.add_argument("--lm-text", help="estimate a Kneser-Ney LM (and its lexicon) from this "
                                      "text file (or corpus text, `demo:lm`) first")
    p.add_argument("--lexicon", help="lexicon (`WORD<TAB>W O R D |` lines); alone, lexicon-"
                                     "constrained beam search without an LM")
    p.add_argument("--lexicon-free", action="store_true",
                   help="beam search over letters without a lexicon (--lm must then be a "
                        "letter-level LM)")
    p.add_argument("--lm-order", type=int, default=4, help="n-gram order for --lm-text "
                                                           "(default 4)")
    beam = beam_defaults()      # one place: the ctc_beam decoder's config (recipes use it too)
    p.add_argument("--lm-weight", type=float, default=beam["lm_weight"],
                   help=f"LM weight (default {beam['lm_weight']:g}, as a recipe's ctc_beam)")
    p.add_argument("--word-score", type=float, default=beam["word_score"],
                   help=f"score added per word (default {beam['word_score']:g}, as a recipe's "
                        "ctc_beam)")
    p.add_argument("--beam", type=int, default=beam["beam"],
                   help=f"beam size (default {beam['beam']}, as a recipe's ctc_beam)")


def beam_defaults() -> dict[str, Any]:
    """The ``ctc_beam`` decoder's field defaults: the commands' defaults come from there."""
    import attrs

    from .decoders import BeamConfig

    return {f.name: f.default for f in attrs.fields(BeamConfig)}


def corpus_path(arg: str | None, where: str) -> str | None:
    """``NAME:SPLIT`` of a registered corpus (``demo:test``, ``demo:lm``) -> its file, built on
    first use, as recipes read it; anything else unchanged."""
    from w2v.data.loader import resolve_corpus

    if arg is None:
        return None
    try:
        return resolve_corpus(arg, None)
    except UserError as exc:
        raise exc.located(where=where) from None


def _require_file(path: str | None, what: str, where: str, hint: str | None = None) -> None:
    if path is not None and not os.path.isfile(path):
        raise DataError(f"{what} `{path}` does not exist" +
                        (" (it is a directory)." if os.path.isdir(path) else "."),
                        where=where, hint=hint or "Check the path.")


def _chunk_seconds(args) -> float | None:
    if args.chunk_seconds < 0 or args.context_seconds < 0:
        raise ConfigError(f"`--chunk-seconds` must be 0 (whole files) or positive and "
                          f"`--context-seconds` non-negative, found {args.chunk_seconds:g} and "
                          f"{args.context_seconds:g}.", where=args.command_name)
    return args.chunk_seconds or None


def load_ctc_model(args, where: str):
    """The fine-tuned model of ``args.checkpoint`` on ``args.device`` and its dictionary;
    a UserError naming the checkpoint when it cannot transcribe."""
    from w2v import load_pretrained

    from .transcribe import attach_dictionary, load_dictionary, model_dictionary

    path = args.checkpoint
    if not os.path.exists(path):
        raise DataError(f"checkpoint `{path}` does not exist.", where=where, hint=_CHECKPOINT_HINT)
    _require_file(args.dictionary, "dictionary", where,
                  "Pass the dict.ltr.txt the model was fine-tuned with.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"`--device {device}`: no CUDA device is available.", where=where,
                          hint="Use `--device cpu`.")
    dictionary = None if args.dictionary is None else load_dictionary(args.dictionary)
    model = load_pretrained(path, dictionary=dictionary)
    # imported fairseq / Hugging Face models: the dictionary given, or the directory's vocab.json
    attach_dictionary(model, dictionary, source=path)
    if getattr(model, "head", None) is None:
        raise ConfigError(f"checkpoint `{path}` has no CTC head: it is a pretrained model, not "
                          "a fine-tuned one, so it cannot turn audio into text.", where=where,
                          hint="Fine-tune it first (e.g. recipes/finetune/base_10m.yaml with "
                               f"`stages.finetune.init.from={path}`) and pass the fine-tuned "
                               "run directory.")
    try:
        dictionary = model_dictionary(model)
    except UserError as exc:
        raise ConfigError(f"checkpoint `{path}`: {exc.message}", where=where,
                          hint=exc.hint) from None
    return model.to(device).eval(), dictionary


def _beam_decoder(args, dictionary, directory, *, held_out=None, evaluated=None):
    """``(decoder, lm report)`` of the LM / lexicon arguments, or ``(None, None)`` (greedy)."""
    from .transcribe import lm_decoder

    if args.lexicon_free and (args.lexicon is not None or args.lm is None):
        raise ConfigError("`--lexicon-free` decodes letters with a letter-level `--lm` and no "
                          "`--lexicon`.", where=args.command_name)
    if args.lm is None and args.lm_text is None and args.lexicon is None:
        return None, None
    decoder, info = lm_decoder(dictionary, lm=args.lm, lexicon=args.lexicon,
                               lm_text=args.lm_text, order=args.lm_order,
                               lexicon_free=args.lexicon_free, directory=directory,
                               held_out=held_out, evaluated=evaluated, beam=args.beam,
                               lm_weight=args.lm_weight, word_score=args.word_score)
    return decoder, None if info is None else info["report"]


# --------------------------------------------------------------------------- transcribe


def configure_transcribe(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="fine-tuned model: w2v run/stage directory or model.pt, "
                                      "fairseq .pt, or Hugging Face directory")
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, ...), or manifests "
                                            "(.tsv, or a corpus split such as `demo:test`) "
                                            "whose files to transcribe")
    _add_model_arguments(p, chunk_default=30.0)
    _add_decoding_arguments(p)
    p.set_defaults(command_name="w2vrun transcribe")


def audio_files(arguments: Sequence[str], where: str) -> list[str]:
    """Audio paths from the command line: files as given, manifests expanded in order."""
    from w2v.data.manifest import read_manifest

    paths = []
    for arg in arguments:
        arg = corpus_path(arg, where)
        _require_file(arg, "audio file", where)
        if arg.endswith(".tsv"):
            manifest = read_manifest(arg)
            paths.extend(manifest.audio_path(r) for r in range(len(manifest)))
        else:
            paths.append(arg)
    return paths


def run_transcribe(args) -> int:
    from .transcribe import transcribe

    where = args.command_name
    paths = audio_files(args.audio, where)
    args.lm_text = corpus_path(args.lm_text, where)
    chunk = _chunk_seconds(args)
    for path in (args.lm, args.lm_text, args.lexicon):
        _require_file(path, "file", where)
    model, dictionary = load_ctc_model(args, where)
    decoder, _ = _beam_decoder(args, dictionary, None)
    for path in paths:
        text = transcribe(model, path, decoder=decoder, chunk_seconds=chunk,
                          context_seconds=args.context_seconds, batch_seconds=args.batch_seconds)
        print(f"{path}\t{text}", flush=True)
    return 0


# --------------------------------------------------------------------------- evaluate


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="fine-tuned model: w2v run/stage directory or model.pt, "
                                      "fairseq .pt, or Hugging Face directory")
    p.add_argument("manifest", help="fairseq manifest (.tsv) with labels beside it "
                                    "(test.tsv + test.ltr), or a corpus split (`demo:test`)")
    p.add_argument("--labels", choices=("ltr", "phn"), default="ltr",
                   help="label file beside the manifest, in the model's dictionary: letters "
                        "`ltr` (default), phones `phn` (WER is then the phone error rate)")
    p.add_argument("--out", type=Path, help="run directory for the results (default: "
                                            "runs/evaluate-<checkpoint name>)")
    _add_model_arguments(p, chunk_default=0.0, batching=False)
    _add_decoding_arguments(p)
    p.set_defaults(command_name="w2vrun evaluate")


def checkpoint_name(path: str | os.PathLike) -> str:
    """A short name for a checkpoint: ``runs/b10m/finetune/model.pt`` -> ``b10m-finetune``,
    ``wav2vec_small_10m.pt`` -> ``wav2vec_small_10m``, a directory -> its name."""
    from w2v.checkpoint_formats import MODEL_FILE

    p = Path(os.path.abspath(path))
    if p.name == MODEL_FILE:
        return f"{p.parent.parent.name}-{p.parent.name}"
    if p.is_file():
        return p.stem
    return f"{p.parent.name}-{p.name}" if (p / MODEL_FILE).exists() else p.name


def _labelled_dataset(args, model, dictionary):
    """The manifest's utterances with labels encoded by the model's dictionary, none left
    out (what the ``evaluate`` stage reads)."""
    from w2v.data.config import DataConfig
    from w2v.data.sources import build_dataset

    whole = DataConfig(test=args.manifest, labels=args.labels, pad=True,
                       sample_rate=model.sample_rate, max_sample_size=1 << 31,
                       max_tokens=1 << 31)
    try:
        return build_dataset(whole, "test", labels=True, dictionary=dictionary,
                             min_samples=model.encoder.produces().receptive_field)
    except DataError as exc:
        if "bad_input" not in (exc.hint or ""):     # a recipe's remedy: say the command's
            raise
        raise DataError(exc.message, where=exc.where, hint=_BAD_LINE_HINT.format(
            manifest=args.manifest)) from None


def _check_manifest(args, where: str) -> None:
    from w2v.data.labels import label_path
    from w2v.data.manifest import read_manifest

    _require_file(args.manifest, "manifest", where,
                  "Make one with `w2vrun manifest AUDIO_DIR --dest DIR` (a fairseq .tsv: the "
                  "audio root on line 1, then `relative/path<TAB>num_samples` lines).")
    read_manifest(args.manifest)        # a malformed manifest: DataError at its file:line
    labels = label_path(args.manifest, args.labels)
    if not os.path.isfile(labels):
        raise DataError(f"manifest `{args.manifest}` has no label file `{labels}` beside it "
                        f"(`--labels {args.labels}`).", where=where,
                        hint="Write one label line per utterance (`w2vrun labels "
                             "TRANSCRIPTS.tsv --dest PREFIX --manifest MANIFEST` makes .ltr and "
                             ".wrd files), or choose another `--labels`.")


def format_table(rows: Sequence[dict[str, Any]], error_name: str = "WER") -> str:
    from .evaluation import decoder_label

    lines = [f"| decoder | CER % | {error_name} % | utterances |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {decoder_label(r)} | {100 * r['cer']:.2f} | {100 * r['wer']:.2f} | "
              f"{r['utterances']} |" for r in rows]
    return "\n".join(lines)


def _merge_results(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` with the rows of this checkpoint on this manifest replaced (earlier
    evaluations written to the same directory are kept)."""
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
    done = {(r["model"], r["split"]) for r in new["results"]}
    rows = [r for r in old.get("results", []) if (r.get("model"), r.get("split")) not in done]
    lms = {**(old.get("lm") or {}), **new.get("lm", {})}
    return {"results": rows + new["results"], **({"lm": lms} if lms else {})}


def run_evaluate(args) -> int:
    from .decoders import CTCGreedyDecoder
    from .evaluation import decode_utterances, lm_settings, score_hypotheses, split_emissions
    from .metrics import check_not_degenerate

    where = args.command_name
    args.manifest = corpus_path(args.manifest, where)
    args.lm_text = corpus_path(args.lm_text, where)
    _check_manifest(args, where)
    chunk = _chunk_seconds(args)
    for path in (args.lm, args.lm_text, args.lexicon):
        _require_file(path, "file", where)
    model, dictionary = load_ctc_model(args, where)
    dataset = _labelled_dataset(args, model, dictionary)
    split = Path(args.manifest).stem
    out = args.out or Path("runs") / f"evaluate-{checkpoint_name(args.checkpoint)}"
    out.mkdir(parents=True, exist_ok=True)

    # the LM first (it refuses a text holding an evaluated transcript), then the audio
    transcripts = [dictionary.words(dataset.target(i).tolist()) for i in range(len(dataset))]
    decoders = {"greedy": CTCGreedyDecoder(CTCGreedyDecoder.Config(), dictionary)}
    beam, lm_report = _beam_decoder(args, dictionary, out, held_out={split: transcripts},
                                    evaluated=transcripts)
    if beam is not None:
        decoders["lm" if lm_report is not None else "lexicon"] = beam
    refs, ids, log_probs = split_emissions(
        model, dataset, dictionary, chunk_seconds=chunk, context_seconds=args.context_seconds,
        bad_hint=_BAD_LINE_HINT.format(manifest=args.manifest))

    name = checkpoint_name(args.checkpoint)
    rows = []
    for dname, decoder in decoders.items():
        hyps = decode_utterances(decoder, log_probs)
        row = {"model": name, "decoder": dname, "split": split, **lm_settings(decoder),
               **score_hypotheses(refs, hyps, out / f"{split}.{dname}.tsv", ids)}
        warning = check_not_degenerate(hyps)
        if warning:
            row["warning"] = warning
            print(f"{where}: warning: {dname} decoding: {warning}", file=sys.stderr)
        rows.append(row)
    for row in rows:
        row.update(checkpoint=str(args.checkpoint), manifest=str(args.manifest))
    result: dict[str, Any] = {"results": rows}
    if lm_report is not None:
        result["lm"] = {f"{name}/{split}": {**lm_report, "lm_weight": args.lm_weight,
                                            "word_score": args.word_score, "beam": args.beam}}
    results_file = out / "results.json"
    results_file.write_text(json.dumps(_merge_results(results_file, result), indent=2) + "\n")

    print(f"{args.checkpoint} on {args.manifest} ({len(refs)} utterances)\n")
    print(format_table(rows, "PER" if args.labels == "phn" else "WER"))
    if lm_report is not None and "oov_rate" in lm_report:
        print(f"\nLM: {lm_report.get('words', '?')} words, OOV rate "
              f"{100 * lm_report['oov_rate']:.2f} % of the reference words")
    print(f"\nper-utterance errors: {', '.join(str(out / r['errors_file']) for r in rows)}")
    return 0


__all__ = ["audio_files", "checkpoint_name", "configure_evaluate", "configure_transcribe",
           "format_table", "load_ctc_model", "run_evaluate", "run_transcribe"]
