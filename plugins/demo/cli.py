"""Command-line front ends: ``w2vrun demo-data`` and ``w2vrun install-engines``.

Also runnable without the core CLI: ``python -m w2v.plugins.demo demo-data ...``.
"""

from __future__ import annotations

import argparse
import sys

DEMO_DATA_HELP = "Build (or find) the synthetic demo speech corpus (fairseq manifests, labels, alignments)."
INSTALL_HELP = "Install the Debian main-archive speech engines and text sources (needs root and apt)."


def configure_demo_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", default=None, metavar="DIR",
                        help="corpus directory (default: $W2V_CACHE/demo/<corpus id>, "
                             "W2V_CACHE defaulting to ~/.cache/w2v)")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="unlabeled (pretraining) audio in minutes (default 30)")
    parser.add_argument("--hours", type=float, default=None,
                        help="unlabeled audio in hours (overrides --minutes)")
    parser.add_argument("--labeled-minutes", type=float, default=10.0,
                        help="labeled train audio in minutes (default 10)")
    parser.add_argument("--eval-minutes", type=float, default=None,
                        help="valid and test audio in minutes each (default labeled/5)")
    parser.add_argument("--unpaired-sentences", type=int, default=None,
                        help="phonemised unpaired text sentences for wav2vec-U (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--engines", default=None,
                        help="comma-separated engines: espeak (the wheel; alias espeak-wheel), "
                             "flite, festival, mbrola (default: all installed)")
    parser.add_argument("--workers", type=int, default=2, help="synthesis processes (default 2)")
    parser.add_argument("--no-real", action="store_true",
                        help="leave out the real human-speech split")
    parser.add_argument("--force", action="store_true", help="rebuild even if the corpus exists")
    parser.add_argument("--quiet", action="store_true", help="print only the corpus path")


def run_demo_data(args: argparse.Namespace) -> int:
    import json

    from .corpus import build_corpus, ensure_corpus
    from .engines import available_engines

    minutes = args.hours * 60.0 if args.hours is not None else args.minutes
    engines = [e for e in args.engines.split(",") if e.strip()] if args.engines else None
    say = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr))
    make = build_corpus if args.force else ensure_corpus
    path = make(args.dest, minutes=minutes, labeled_minutes=args.labeled_minutes, seed=args.seed,
                engines=engines, eval_minutes=args.eval_minutes,
                unpaired_sentences=args.unpaired_sentences, workers=args.workers,
                real=not args.no_real, progress=say)
    meta = json.loads((path / "meta.json").read_text())
    if not args.quiet:
        say(f"corpus {meta['corpus_id']} ({meta.get('disk_mb', '?')} MB, built in "
            f"{meta.get('build_seconds', '?')} s)")
        for name, split in meta["splits"].items():
            say(f"  {name:10s} {split['minutes']:7.2f} min  {split['utterances']:5d} utterances  "
                f"{len(split['voices']):4d} voices  {len(split['speakers']):3d} speakers")
        real = meta.get("real", {})
        say(f"  {'real':10s} {real.get('seconds', 0) / 60:7.2f} min  {real.get('utterances', 0):5d} "
            "utterances (human speech)")
        say(f"  unpaired   {meta['unpaired']['sentences']} sentences; "
            f"lm.txt {meta['lm']['sentences']} sentences")
        absent = [e for e in ("flite", "festival") if e not in available_engines()]
        if absent:
            say(f"  note: {', '.join(absent)} not installed; `w2vrun install-engines` adds more "
                "natural voices (a different corpus id).")
    print(path)
    return 0


def configure_install_engines(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only print what would be installed")


def run_install_engines(args: argparse.Namespace) -> int:
    from .install import install_engines

    return install_engines(dry_run=args.dry_run)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m w2v.plugins.demo``)."""
    from w2v.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m w2v.plugins.demo")
    commands = parser.add_subparsers(dest="command", required=True)
    configure_demo_data(commands.add_parser("demo-data", help=DEMO_DATA_HELP))
    configure_install_engines(commands.add_parser("install-engines", help=INSTALL_HELP))
    args = parser.parse_args(argv)
    try:
        if args.command == "demo-data":
            return run_demo_data(args)
        return run_install_engines(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
