"""``w2vrun ablate STUDY.yaml``: run a study's variants and write its page."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="STUDY.yaml", help="the study file (docs/ablations/)")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="runs at a time (default: %(default)s)")
    parser.add_argument("--runs", type=Path, default=None, metavar="DIR",
                        help="where the runs go (default: runs/ablations/<study>)")
    parser.add_argument("--variants", default=None, metavar="A,B",
                        help="run only these variants (e.g. the GPU-sized ones on another "
                             "machine); the page still lists every variant")
    parser.add_argument("--merge", type=Path, action="append", default=[], metavar="DIR",
                        help="first copy the finished runs of DIR (another machine's "
                             "runs/ablations/<study>) that are missing here; repeatable")
    parser.add_argument("--dry-run", action="store_true",
                        help="check that every variant builds (`w2vrun --dry-run` of its "
                             "first seed); train nothing, write no page")
    parser.add_argument("--no-run", action="store_true",
                        help="run nothing: (merge and) write the page from the runs there are")


def run(args: argparse.Namespace) -> int:
    import w2v
    from w2v.errors import ConfigError, did_you_mean

    from .machine import git_commit, study_outputs
    from .page import write_page
    from .plot import plot_results
    from .results import collect
    from .runs import merge, outcome, run_all
    from .study import load_study

    if args.parallel < 1:
        raise ConfigError(f"`--parallel` must be at least 1, found {args.parallel}.",
                          where="command line")
    study = load_study(args.study)
    root = args.runs or Path("runs") / "ablations" / study.name
    runs = study.runs(root)
    chosen = runs
    if args.variants:
        names = [v.strip() for v in args.variants.split(",") if v.strip()]
        for name in names:
            if name not in study.variants:
                raise ConfigError(f"`--variants`: `{name}` is not a variant of {study.path}.",
                                  where="command line",
                                  hint=did_you_mean(name, list(study.variants), "variants"))
        chosen = [r for r in runs if r.variant in names]
    if args.dry_run:
        return check_variants(study, chosen)
    for other in args.merge:
        for name in merge(runs, other):
            print(f"ablate: merged {name} from {other}")
    if args.no_run:
        outcomes = [outcome(r) for r in runs]
    else:
        done = {id(o.run): o for o in run_all(study, chosen, args.parallel)}
        outcomes = [done.get(id(r)) or outcome(r) for r in runs]
    results = collect(study, outcomes)
    plot = plot_results(results, [m.name for m in study.config.metrics], study.config.title,
                        study.path.with_suffix(".png"))
    hardware = sorted({o.record["hardware"] for o in outcomes
                       if o.state == "done" and o.record.get("hardware")})
    commit = git_commit(Path(w2v.__file__).parent, study_outputs(study.path))
    page = write_page(study, results, command=reproduce(args), commit=commit,
                      hardware=hardware, runs_root=root, plot=plot)
    failed = [o.run.name for o in outcomes if o.state != "done"]
    print(f"ablate: {len(runs) - len(failed)} of {len(runs)} runs finished; page {page}")
    if failed:
        print(f"ablate: not finished: {', '.join(failed)} (errors on the page)")
    return 1 if failed else 0


def reproduce(args: argparse.Namespace) -> str:
    """The command that runs the whole study again (options that change results only)."""
    parts = ["w2vrun", "ablate", str(args.study)]
    if args.runs is not None:
        parts += ["--runs", str(args.runs)]
    return " ".join(shlex.quote(p) for p in parts)


def check_variants(study, runs) -> int:
    """``--dry-run``: each variant's first seed through ``w2vrun --dry-run``; exit 1 if any fails."""
    from .runs import dry_run

    first = {}
    for run in runs:
        first.setdefault(run.variant, run)
    failed = 0
    for run in first.values():
        error = dry_run(study, run)
        failed += error is not None
        print(f"ablate: {run.variant}: " + ("builds" if error is None else f"FAILS: {error}"))
    return 1 if failed else 0
