"""``w2vrun manifest`` and ``w2vrun labels``: make fairseq manifests and letter labels."""

from __future__ import annotations

import argparse

from w2v.data.manifest import DEFAULT_EXTS


def configure_manifest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio_dir", metavar="AUDIO_DIR",
                        help="folder searched recursively for audio files; with --source, the "
                             "split to convert (a Kaldi data dir, a cuts.jsonl.gz, a saved "
                             "dataset, ...)")
    parser.add_argument("--dest", required=True, metavar="DIR",
                        help="folder to write train.tsv and valid.tsv into")
    parser.add_argument("--source", default=None, metavar="NAME",
                        help="convert this data source's split to a fairseq manifest (+ .wrd, "
                             ".ltr with transcripts): kaldi, lhotse, hf_dataset, ...")
    parser.add_argument("--split", default="train",
                        help="with --source: the split name written (default: %(default)s)")
    parser.add_argument("--bad-input", choices=("fail", "skip"), default="fail",
                        help="with --source: stop at a bad file (fail) or leave it out (skip)")
    parser.add_argument("--ext", default=",".join(DEFAULT_EXTS),
                        help="comma-separated audio extensions (default: %(default)s)")
    parser.add_argument("--valid-percent", type=float, default=0.01,
                        help="fraction of files put in valid.tsv, 0 for none "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="split seed (default: %(default)s)")
    parser.add_argument("--path-must-contain", default=None, metavar="TEXT",
                        help="keep only files whose path contains TEXT")


def run_manifest(args: argparse.Namespace) -> int:
    from w2v.data.manifest import read_manifest, write_manifests

    if args.source is not None:
        return convert_source(args)

    exts = [e.strip() for e in args.ext.split(",") if e.strip()]
    written = write_manifests(args.audio_dir, args.dest, exts=exts,
                              valid_percent=args.valid_percent, seed=args.seed,
                              path_must_contain=args.path_must_contain)
    for split, path in written.items():
        print(f"{split}: {path} ({len(read_manifest(path))} files)")
    return 0


def configure_labels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("transcripts", metavar="TRANSCRIPTS.tsv",
                        help="table of `id<TAB>text` lines")
    parser.add_argument("--dest", required=True, metavar="PREFIX",
                        help="output prefix: writes PREFIX.wrd, PREFIX.ltr and dict.ltr.txt "
                             "beside them (e.g. manifests/train)")
    parser.add_argument("--manifest", default=None, metavar="TSV",
                        help="order the labels like this manifest's rows (ids match the file "
                             "name without extension); default: table order")
    parser.add_argument("--no-dict", action="store_true",
                        help="do not write dict.ltr.txt (e.g. for valid labels, whose "
                             "dictionary comes from train)")


def run_labels(args: argparse.Namespace) -> int:
    from w2v.data.labels import align_transcripts, read_transcripts, write_labels
    from w2v.data.manifest import read_manifest

    rows = read_transcripts(args.transcripts)
    if args.manifest:
        rows = align_transcripts(rows, read_manifest(args.manifest))
    paths = write_labels(rows, args.dest, dictionary=not args.no_dict)
    print(f"wrote {len(rows)} labels: " + ", ".join(paths.values()))
    return 0


def convert_source(args: argparse.Namespace) -> int:
    """``w2vrun manifest --source NAME PATH --dest DIR``: one split of any waveform source."""
    from w2v.data.sources import AudioSource, SPLITS, open_source, structure_data
    from w2v.errors import ConfigError

    from .convert import convert_split

    split = args.split if args.split in SPLITS else "train"
    cfg = structure_data({"name": args.source, split: args.audio_dir,
                          "bad_input": args.bad_input}, path=("--source",))
    source = open_source(cfg)
    if not isinstance(source, AudioSource):
        raise ConfigError(f"the `{args.source}` data source holds no audio to list in a "
                          "manifest.", where="w2vrun manifest --source",
                          hint="Convert a waveform source: fairseq, kaldi, lhotse, hf_dataset.")
    written = convert_split(source, split, args.dest)
    if args.split != split:
        import os
        for key in ("tsv", "wrd", "ltr"):
            if key in written:
                target = os.path.join(args.dest, f"{args.split}.{key}")
                os.replace(written[key], target)
                written[key] = target
    print(f"{args.split}: {written['tsv']} ({written['utterances']} utterances)")
    for key in ("wrd", "ltr", "dict"):
        if key in written:
            print(f"  {key}: {written[key]}")
    for rec in written["skipped"]:
        print(f"  left out {rec.path} ({rec.reason}: {rec.detail})")
    return 0
