"""``w2vrun export``: a trained or imported model as a Hugging Face directory.

    w2vrun export RUN_OR_CHECKPOINT --to hf DIR [--dictionary dict.ltr.txt] [--overwrite]

``RUN_OR_CHECKPOINT`` is anything :func:`w2v.load_pretrained` reads (a w2v run
or stage directory, a ``model.pt``, a fairseq ``.pt``, a Hugging Face
directory). A fine-tuned CTC model becomes ``Wav2Vec2ForCTC`` with its
tokenizer, a pretraining model ``Wav2Vec2ForPreTraining``
(:func:`~.export_hf.to_hf`; docs/interop.md). Exit codes: 0 written, 2 a user
error (a missing checkpoint, a model Hugging Face cannot express, a non-empty
DIR without ``--overwrite``), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from w2v.errors import DataError, UserError

EXPORT_HELP = ("Export a model to another toolkit's format: `--to hf` writes a Hugging Face "
               "Wav2Vec2 directory (weights, config, feature extractor, tokenizer).")
FORMATS = ("hf",)


def configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="w2v run/stage directory or model.pt, fairseq .pt, or "
                                      "Hugging Face directory")
    p.add_argument("--to", required=True, choices=FORMATS, dest="format",
                   help="target format: `hf` (Hugging Face transformers)")
    p.add_argument("directory", metavar="DIR", type=Path, help="output directory")
    p.add_argument("--dictionary", help="label dictionary of a fine-tuned fairseq checkpoint "
                                        "(dict.ltr.txt), which carries none")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty directory (files of the same names replaced)")
    p.set_defaults(command_name="w2vrun export")


def run_export(args) -> int:
    from .export_hf import check_exportable, ctc_dictionary, load_for_export, to_hf

    where = args.command_name
    if not os.path.exists(args.checkpoint):
        raise DataError(f"checkpoint `{args.checkpoint}` does not exist.", where=where,
                        hint="Pass a w2v run or stage directory (runs/NAME/finetune), its "
                             "model.pt, a fairseq .pt or a Hugging Face directory.")
    if args.dictionary is not None and not os.path.isfile(args.dictionary):
        raise DataError(f"dictionary `{args.dictionary}` does not exist.", where=where,
                        hint="Pass the dict.ltr.txt the model was fine-tuned with.")
    out = args.directory
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.overwrite)):
        raise UserError(f"`{out}` already exists" + (" and is not empty." if out.is_dir() else
                                                     " and is a file."), where=where,
                        hint="Choose a new directory, or pass `--overwrite` to replace the "
                             "files of an earlier export there.")
    try:
        model, objective_state = load_for_export(args.checkpoint, args.dictionary)
        check_exportable(model)
        if getattr(model, "head", None) is not None and ctc_dictionary(model) is None:
            raise UserError("the model has a CTC head but carries no label dictionary, so the "
                            "tokenizer files (vocab.json) cannot be written.",
                            hint="Pass the dictionary it was fine-tuned with: `--dictionary "
                                 "dict.ltr.txt`.")
        report = to_hf(model, out, objective_state=objective_state)
    except UserError as exc:
        raise UserError(f"cannot export `{args.checkpoint}`: {exc.message}", where=where,
                        key=exc.key, hint=exc.hint) from None
    config = json.loads((out / "config.json").read_text())
    print(f"{args.checkpoint} -> {out} ({config['architectures'][0]}; "
          f"{len(report.loaded)} tensors)")
    for note in report.notes:
        print(f"note: {note}")
    print(f"load it with transformers.{config['architectures'][0]}.from_pretrained('{out}')" +
          ("" if config["architectures"][0] != "Wav2Vec2ForCTC" else
           f" or transformers.pipeline('automatic-speech-recognition', model='{out}')"))
    return 0


__all__ = ["EXPORT_HELP", "configure_export", "run_export"]
