"""``w2vrun benchmark MODEL``: featurize the corpus once, run every task, write the results."""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

#: Default budgets per task: (updates, peak lr, seconds of audio per batch); the CTC ones are
#: the demo's probes' (recipes/demo.yaml, docs/demo-scale.md section 3).
DEFAULT_BUDGETS = {"letters": (400, 5e-3, 20.0), "phones": (400, 5e-3, 20.0),
                   "speaker": (400, 5e-3, 20.0)}


def configure(p: argparse.ArgumentParser) -> None:
    from .tasks import TASKS

    p.add_argument("model", metavar="MODEL",
                   help="run directory, model.pt, fairseq .pt or Hugging Face directory; "
                        "random:RECIPE (the recipe's model, random weights); or a front end "
                        "(logmel, mfcc, ...; options as logmel:frame_shift_ms=20)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where the table, JSON, plot and probe runs go "
                        "(default: runs/benchmark/<model>)")
    p.add_argument("--train", default="demo:train", help="training split (default: %(default)s)")
    p.add_argument("--valid", default="demo:valid", help="held-out split (default: %(default)s)")
    p.add_argument("--test", default="demo:test", help="held-out split the table reports "
                                                       "(default: %(default)s)")
    p.add_argument("--tasks", default=",".join(TASKS),
                   help="comma-separated subset of: " + ", ".join(TASKS))
    p.add_argument("--layer", default="-1",
                   help="the single layer probed beside the weighted sum: a context block "
                        "(0-based, as `w2vrun featurize --layer`; negative from the end) or "
                        "`input` (default: %(default)s, the last block)")
    p.add_argument("--updates", type=int, default=None,
                   help="updates of every probe (default: "
                        f"{DEFAULT_BUDGETS['letters'][0]})")
    p.add_argument("--lr", type=float, default=None,
                   help=f"peak lr of every probe (default: {DEFAULT_BUDGETS['letters'][1]:g})")
    p.add_argument("--batch-seconds", type=float, default=None,
                   help="seconds of audio per probe batch (default: "
                        f"{DEFAULT_BUDGETS['letters'][2]:g})")
    p.add_argument("--lstm-layers", type=int, default=1,
                   help="BiLSTM layers of the CTC probes' head (0: linear; default: %(default)s)")
    p.add_argument("--lstm-dim", type=int, default=128,
                   help="BiLSTM width per direction (default: %(default)s)")
    p.add_argument("--layer-norm", action="store_true",
                   help="layer-normalise each layer before the weighted sum (default: layers "
                        "as they are, as SUPERB)")
    p.add_argument("--units", type=int, default=100,
                   help="k-means clusters for PNMI (default: %(default)s)")
    p.add_argument("--kmeans-frames", type=int, default=20000,
                   help="train frames k-means is fitted on (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of probes, k-means, the speaker split and random:RECIPE "
                        "weights (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="where the model and probes run (default: %(default)s)")
    p.add_argument("--docs", nargs="?", type=Path, const=Path("docs/downstream.md"),
                   default=None, metavar="PAGE",
                   help="merge this model's rows into PAGE's results table (default PAGE: "
                        "docs/downstream.md; rows of other models are kept)")
    p.add_argument("--label", default=None,
                   help="the model's name in the tables (default: from MODEL)")


def run(args: argparse.Namespace) -> int:
    import torch

    from w2v.errors import ConfigError, did_you_mean

    from .corpus import resolve_splits
    from .layers import featurize_split, resolve_layer
    from .models import load_model
    from .report import merge_into_docs, slug, write_outputs
    from .tasks import TASKS, Context, Settings, ctc_task, pnmi_task, speaker_task
    from .training import Budget

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        if t not in TASKS:
            raise ConfigError(f"`--tasks`: unknown task `{t}`.", where="command line",
                              hint=did_you_mean(t, TASKS, "tasks"))
    for name in ("updates", "lr", "batch_seconds", "units", "kmeans_frames", "lstm_dim"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"`--{name.replace('_', '-')}` must be positive, found {value}.",
                              where="command line")
    if args.lstm_layers < 0:
        raise ConfigError(f"`--lstm-layers` must be 0 or more, found {args.lstm_layers}.",
                          where="command line")
    started = time.time()
    load_at_start = machine("").get("load_average")
    device = args.device if args.device != "auto" else \
        ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(args.model, seed=args.seed)
    label = args.label or loaded.label
    out = args.out or Path("runs") / "benchmark" / slug(label)
    out.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        print(f"[benchmark] {text}", flush=True)

    references = {"train": args.train, "valid": args.valid, "test": args.test}
    splits = resolve_splits({k: v for k, v in references.items() if v})
    if "train" not in splits:
        raise ConfigError("`--train` is required: the probes train on it.", where="command line")
    model = loaded.model.to(device)
    data = {name: featurize_split(model, split, device=device, progress=log)
            for name, split in splits.items()}
    names = data["train"].names
    layer = resolve_layer(str(args.layer), names)
    log(f"layers: {', '.join(names)}; single-layer probe on `{names[layer]}`")
    del model
    budgets = {task: Budget(updates=args.updates or u, lr=args.lr or lr,
                            batch_seconds=args.batch_seconds or b)
               for task, (u, lr, b) in DEFAULT_BUDGETS.items()}
    settings = Settings(budgets=budgets, lstm_layers=args.lstm_layers, lstm_dim=args.lstm_dim,
                        layer_norm=args.layer_norm, units=args.units,
                        kmeans_frames=args.kmeans_frames, seed=args.seed, device=device)
    ctx = Context(splits=splits, data=data, layer=layer, settings=settings, out=out, log=log)
    results: dict = {}
    for task in ("letters", "phones", "speaker"):
        if task in tasks:
            results[task] = ctc_task(ctx, "ltr" if task == "letters" else "phn") \
                if task != "speaker" else speaker_task(ctx)
    if "pnmi" in tasks:
        results["pnmi"] = pnmi_task(ctx, weighted=(results.get("phones") or {}).get("_probe"))
    for r in results.values():
        r.pop("_probe", None)
    record = {
        "model": {"spec": loaded.spec, "kind": loaded.kind, "label": label},
        "layers": names, "layer": names[layer], "tasks": results,
        "settings": {"lstm_layers": settings.lstm_layers, "lstm_dim": settings.lstm_dim,
                     "layer_norm": settings.layer_norm, "units": settings.units,
                     "kmeans_frames": settings.kmeans_frames, "seed": settings.seed,
                     "held_out_speaker_fraction": settings.held_out},
        "data": {name: {"reference": s.reference, "manifest": s.manifest,
                        "minutes": round(data[name].seconds / 60, 2)}
                 for name, s in splits.items()},
        "command": reproduce(args),
        "wall_s": round(time.time() - started, 1),
    }
    record.update(machine(device), load_average_at_start=load_at_start)
    paths = write_outputs(record, out)
    log(f"wrote {', '.join(str(p) for p in paths)} ({record['wall_s']:.0f} s)")
    if args.docs is not None:
        log(f"merged into {merge_into_docs(record, out, args.docs)}")
    return 0


def reproduce(args: argparse.Namespace) -> str:
    """``w2vrun benchmark MODEL`` with the options that differ from their defaults."""
    parser = argparse.ArgumentParser()
    configure(parser)
    defaults = vars(parser.parse_args([args.model]))
    parts = ["w2vrun", "benchmark", args.model]
    for action in parser._actions:
        key = action.dest
        if not action.option_strings or key == "help" or args.__dict__.get(key) == defaults[key]:
            continue
        value = getattr(args, key)
        flag = action.option_strings[-1]
        parts += [flag] if value is True or (key == "docs" and value == action.const) \
            else [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def machine(device: str) -> dict:
    """Hardware, device, load average and the w2v commit, for the record."""
    import os

    import w2v
    from w2v.plugins.ablation.machine import git_commit, hardware

    info = {"hardware": hardware(), "device": device,
            "commit": git_commit(Path(w2v.__file__).parent)}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info
