"""The claim in miniature (``recipes/demo_claim.yaml``): 3 seeds per arm, the baseline tuned.

Phase 1, in parallel: pretraining for every pretraining seed, and the from-scratch arm's
sweep over learning rate and time-masking probability on the first seed (chosen on the
*valid* split). Phase 2: CTC fine-tuning of every seed, and the other seeds of the best
from-scratch setting. Every run evaluates on the test split (greedy and 4-gram LM).
Writes ``results.json`` and ``claim.md`` (the verdict: mean CER gap >= 15 points and no
overlap between the arms' seeds).

    python tests/benchmarks/demo_claim.py --out runs/demo_claim --parallel 12   # GPU: minutes
    python tests/benchmarks/demo_claim.py --out runs/demo_claim --pretrain-seeds 1 \\
        --finetune-updates 600 --parallel 1 --threads 2                          # 2-core CPU
    python tests/benchmarks/demo_claim.py --out /tmp/c --pretrain-updates 2 --finetune-updates 2 \\
        --scratch-lrs 1e-3 --scratch-masks 0.5                                  # plumbing check
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from demo_scale import VARIANTS
from runs import Job, best, evaluation, machine, run_jobs, summary

RECIPE = "recipes/demo_claim.yaml"
GAP_POINTS = 15.0


def scratch_name(lr: str, mask: str, seed: int) -> str:
    return f"scratch_lr{lr}_mask{mask}_s{seed}"


def scratch_job(out: Path, lr: str, mask: str, seed: int, common: list[str]) -> Job:
    name = scratch_name(lr, mask, seed)
    return Job(name, RECIPE, out / name, ["scratch", "evaluate_arms"],
               [f"trainer.seed={seed}", f"stages.scratch.trainer.lr={lr}",
                f"stages.scratch.model.masker.mask_prob={mask}",
                "stages.evaluate_arms.models=[scratch]", *common])


def pretrained_jobs(out: Path, seed: int, common: list[str], pretrain: list[str]) -> list[Job]:
    run = out / f"pretrained_s{seed}"
    return [Job(f"pretrain_s{seed}", RECIPE, run, ["pretrain"],
                [f"trainer.seed={seed}", *pretrain, *common]),
            Job(f"finetune_s{seed}", RECIPE, run, ["finetune", "evaluate_arms"],
                [f"trainer.seed={seed}", *pretrain, "stages.evaluate_arms.models=[finetune]",
                 *common], after=[f"pretrain_s{seed}"])]


def share_pretraining(out: Path, seeds: list[int], pretrain_seeds: list[int]) -> None:
    """Point each seed without its own pretraining at a pretraining seed's output, in turn."""
    for i, seed in enumerate(s for s in seeds if s not in pretrain_seeds):
        link = out / f"pretrained_s{seed}" / "pretrain"
        if not link.exists():
            source = out / f"pretrained_s{pretrain_seeds[i % len(pretrain_seeds)]}" / "pretrain"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source.resolve())


def pretraining_seed(out: Path, seed: int) -> int:
    """The seed whose pretraining ``seed``'s fine-tuning started from."""
    stage = (out / f"pretrained_s{seed}" / "pretrain").resolve()
    return int(stage.parent.name.removeprefix("pretrained_s"))


def _valid_uer(run: Path, stage: str) -> float | None:
    value = best(run, stage, "uer")
    return None if value is None else value / 100.0


def arm_row(run: Path, stage: str, seed: int, setting: str) -> dict:
    ev = evaluation(run, "evaluate_arms")
    greedy, lm = ev.get((stage, "greedy"), {}), ev.get((stage, "lm"), {})
    return {"seed": seed, "setting": setting, "valid_uer": _valid_uer(run, stage),
            "cer": greedy.get("cer"), "wer": greedy.get("wer"),
            "cer_lm": lm.get("cer"), "wer_lm": lm.get("wer"),
            "trainable_parameters": summary(run, stage).get("trainable_parameters"),
            "seconds": summary(run, stage).get("seconds")}


def verdict(pre: list[dict], scr: list[dict]) -> dict:
    a = [r["cer"] for r in pre if r["cer"] is not None]
    b = [r["cer"] for r in scr if r["cer"] is not None]
    if not a or not b:
        return {"pass": False, "reason": "missing results"}
    gap = 100 * (statistics.mean(b) - statistics.mean(a))
    separated = max(a) < min(b)
    return {"pass": gap >= GAP_POINTS and separated, "gap_points": gap,
            "separated": separated, "pretrained_mean_cer": statistics.mean(a),
            "scratch_mean_cer": statistics.mean(b), "seeds": [len(a), len(b)]}


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def report(result: dict) -> str:
    v = result["verdict"]
    lines = [f"Machine: {result['machine']}.",
             f"Pretraining seeds: {', '.join(map(str, result['pretrain_seeds']))}.", "",
             "| arm | seed | setting | valid UER % | test CER % | test WER % | CER % (LM) | "
             "WER % (LM) | trainable params | train s |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for arm in ("pretrained", "scratch"):
        for r in result[arm]:
            lines.append(f"| {arm} | {r['seed']} | {r['setting']} | {_pct(r['valid_uer'])} "
                         f"| {_pct(r['cer'])} | {_pct(r['wer'])} | {_pct(r['cer_lm'])} "
                         f"| {_pct(r['wer_lm'])} | {r['trainable_parameters'] or '—'} "
                         f"| {r['seconds'] or '—'} |")
    lines += ["", "From-scratch sweep (seed 1, chosen on valid UER):", "",
              "| lr | mask_prob | valid UER % |", "| --- | --- | ---: |"]
    for r in result["sweep"]:
        lines.append(f"| {r['lr']} | {r['mask']} | {_pct(r['valid_uer'])} |")
    if "gap_points" in v:
        lines += ["", f"Mean test CER (greedy): pretrained {_pct(v['pretrained_mean_cer'])} %, "
                      f"from scratch {_pct(v['scratch_mean_cer'])} %: gap {v['gap_points']:.1f} "
                      f"points; seeds {'do not overlap' if v['separated'] else 'overlap'}. "
                      f"**{'PASS' if v['pass'] else 'FAIL'}** (needs >= {GAP_POINTS:.0f} points "
                      "and no overlap)."]
    else:
        lines += ["", f"**FAIL**: {v['reason']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--pretrain-seeds", default=None,
                    help="seeds that get their own pretraining (default: every seed); the "
                         "other seeds fine-tune from these in turn, which saves CPU time but "
                         "leaves pretraining variance unsampled")
    ap.add_argument("--scratch-lrs", default="3e-4,1e-3,3e-3")
    ap.add_argument("--scratch-masks", default="0.0,0.5")
    ap.add_argument("--pretrain-updates", type=int, default=None)
    ap.add_argument("--finetune-updates", type=int, default=None,
                    help="updates of both arms (they always get the same number)")
    ap.add_argument("--pretrain-variant", default="demo", choices=list(VARIANTS),
                    help="a pretraining variant of tests/benchmarks/demo_scale.py (its overrides "
                         "apply to the pretraining)")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds after which running jobs are stopped and results collected")
    ap.add_argument("overrides", nargs="*", help="extra overrides for every run")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    pretrain_seeds = ([int(s) for s in args.pretrain_seeds.split(",")]
                      if args.pretrain_seeds else seeds)
    lrs, masks = args.scratch_lrs.split(","), args.scratch_masks.split(",")
    common = list(args.overrides)
    if args.finetune_updates:
        common += [f"stages.finetune.trainer.max_updates={args.finetune_updates}",
                   f"stages.scratch.trainer.max_updates={args.finetune_updates}"]
    pretrain = list(VARIANTS[args.pretrain_variant])
    if args.pretrain_updates:
        pretrain.append(f"trainer.max_updates={args.pretrain_updates}")
    logs = args.out / "logs"
    deadline = args.deadline and time.time() + args.deadline

    # Phase 1: pretraining of every seed, the scratch sweep on the first seed.
    phase1 = [pretrained_jobs(args.out, s, common, pretrain)[0] for s in pretrain_seeds]
    phase1 += [scratch_job(args.out, lr, m, seeds[0], common) for lr in lrs for m in masks]
    run_jobs(phase1, args.parallel, logs, threads=args.threads, deadline=deadline)
    sweep = [{"lr": lr, "mask": m,
              "valid_uer": _valid_uer(args.out / scratch_name(lr, m, seeds[0]), "scratch")}
             for lr in lrs for m in masks]
    scored = [r for r in sweep if r["valid_uer"] is not None]
    chosen = min(scored, key=lambda r: r["valid_uer"]) if scored else sweep[0]

    # Phase 2: fine-tune every seed; the other seeds of the chosen scratch setting.
    share_pretraining(args.out, seeds, pretrain_seeds)
    phase2 = [pretrained_jobs(args.out, s, common, pretrain)[1] for s in seeds]
    for job in phase2:
        job.after = []          # phase 1 ran them; a failed pretraining leaves no model.pt
    phase2 += [scratch_job(args.out, chosen["lr"], chosen["mask"], s, common) for s in seeds[1:]]
    run_jobs(phase2, args.parallel, logs, threads=args.threads, deadline=deadline)

    setting = f"lr {chosen['lr']}, mask_prob {chosen['mask']}"
    pre = [arm_row(args.out / f"pretrained_s{s}", "finetune", s,
                   f"recipe, pretraining seed {pretraining_seed(args.out, s)}") for s in seeds]
    scr = [arm_row(args.out / scratch_name(chosen["lr"], chosen["mask"], s), "scratch", s, setting)
           for s in seeds]
    result = {"machine": machine(), "pretrain_seeds": pretrain_seeds,
              "pretrain_variant": args.pretrain_variant, "pretrain_overrides": pretrain,
              "overrides": common,
              "pretrained": pre, "scratch": scr, "sweep": sweep, "verdict": verdict(pre, scr)}
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (args.out / "claim.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
