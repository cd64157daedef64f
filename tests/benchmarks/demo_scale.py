"""The demo-scale spike: which small wav2vec 2.0 pretraining learns on the demo corpus, and
how much the pretrained features help a frozen-feature CTC probe per unit of compute.

For every pretraining variant (overrides of ``recipes/demo.yaml``) and update budget it runs
``pretrain -> probe_pretrained -> evaluate`` of the demo recipe; once, the two baselines
``probe_random`` and ``probe_logmel``, and a random-init probe for every variant that changes
the model (the gap is always to the random-init probe of the same architecture). It writes ``results.json``, ``table.md`` and
``demo_scale.png`` (probe test CER gap to the random-init probe against pretraining updates).

    python tests/benchmarks/demo_scale.py --out runs/demo_scale                  # full grid
    python tests/benchmarks/demo_scale.py --out runs/demo_scale --variants demo,waveform@400 \\
        --budgets 200,800,3200 --parallel 1 --threads 2 [--skip-done]            # 2-core CPU
    python tests/benchmarks/demo_scale.py --out /tmp/s --variants demo --budgets 2 \\
        --probe-updates 2                                                       # plumbing check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from runs import Job, best, evaluation, last, machine, run_jobs, summary

RECIPE = "recipes/demo.yaml"

#: The waveform front end of the first demo drafts: wav2vec 2.0's conv encoder, 7 x 128 channels.
WAVEFORM = ("model.encoder={name: wav2vec2_conv, mode: layer_norm, feature_grad_mult: 0.1, "
            "conv_layers: [[128,10,5],[128,3,2],[128,3,2],[128,3,2],[128,3,2],"
            "[128,2,2],[128,2,2]]}")

#: Pretraining variants: overrides of recipes/demo.yaml (log-mel front end, Gumbel, pre-LN).
VARIANTS: dict[str, list[str]] = {
    "demo": [],
    "continuous": ["model.quantizer=null"],
    "cold": ["model.quantizer.temp=[1.0,0.25,0.999995]"],
    "lr2e-3": ["trainer.lr=2e-3", "trainer.schedule={name: polynomial, warmup: 0.2}"],
    "wide": ["model.aggregator.embed_dim=256", "model.aggregator.ffn_dim=1024",
             "model.aggregator.layers=6"],
    "waveform": [WAVEFORM],
    "waveform_postln": [WAVEFORM, "model.aggregator.layer_norm_first=false"],
    "waveform_groupnorm": [WAVEFORM.replace("layer_norm", "group_norm"),
                           "objective.loss_weights=[0.1,10.0]"],
}

GREEDY_ONLY = ["stages.evaluate.lm_text=null", "stages.evaluate.decoders.lm=null"]


def own_architecture(variant: str) -> bool:
    """Whether ``variant`` changes the model, so that its random-init probe differs from the
    demo's (training-only variants share the demo's)."""
    return any(o.startswith("model.") for o in VARIANTS[variant])


def random_run(out: Path, variant: str) -> Path:
    return out / (f"random_{variant}" if own_architecture(variant) else "baselines")


def jobs_for(out: Path, grid: dict[str, list[int]], probe_updates: int | None,
             extra: list[str]) -> list[Job]:
    probe = ([f"stages.{p}.trainer.max_updates={probe_updates}"
              for p in ("probe_pretrained", "probe_random", "probe_logmel")]
             if probe_updates else [])
    jobs = [Job("baselines", RECIPE, out / "baselines",
                ["probe_random", "probe_logmel", "evaluate"],
                ["stages.evaluate.models=[probe_random,probe_logmel]", *GREEDY_ONLY, *probe,
                 *extra])]
    for variant in filter(own_architecture, grid):
        jobs.append(Job(f"random_{variant}", RECIPE, random_run(out, variant),
                        ["probe_random", "evaluate"],
                        [*VARIANTS[variant], "stages.evaluate.models=[probe_random]",
                         *GREEDY_ONLY, *probe, *extra]))
    for n in sorted({n for budgets in grid.values() for n in budgets}):
        for variant in (v for v, budgets in grid.items() if n in budgets):
            jobs.append(Job(f"{variant}_{n}", RECIPE, out / f"{variant}_{n}",
                            ["pretrain", "probe_pretrained", "evaluate"],
                            [*VARIANTS[variant], f"trainer.max_updates={n}",
                             "stages.evaluate.models=[probe_pretrained]", *GREEDY_ONLY, *probe,
                             *extra]))
    return jobs


def _greedy_cer(run: Path, model: str) -> float | None:
    return evaluation(run, "evaluate").get((model, "greedy"), {}).get("cer")


def collect(out: Path, grid: dict[str, list[int]]) -> dict:
    """Every grid point's pretraining and probe numbers; the gap is to the random-init probe
    of the same architecture."""
    cer = {m: _greedy_cer(out / "baselines", m) for m in ("probe_random", "probe_logmel")}
    rows = []
    for variant, budgets in grid.items():
        random_cer = _greedy_cer(random_run(out, variant), "probe_random")
        for n in budgets:
            run = out / f"{variant}_{n}"
            probe_cer = _greedy_cer(run, "probe_pretrained")
            rows.append({
                "variant": variant, "updates": n, "overrides": VARIANTS[variant],
                "pretrain_seconds": summary(run, "pretrain").get("seconds"),
                "accuracy": last(run, "pretrain", "accuracy"),
                "contrastive": last(run, "pretrain", "contrastive"),
                "code_perplexity": last(run, "pretrain", "code_perplexity"),
                "probe_valid_uer": _fraction(best(run, "probe_pretrained", "uer")),
                "probe_test_cer": probe_cer,
                "random_test_cer": random_cer,
                "gap_to_random": (random_cer - probe_cer)
                if probe_cer is not None and random_cer is not None else None,
            })
    return {"machine": machine(), "baselines": cer, "rows": rows}


def _fraction(percent):
    return None if percent is None else percent / 100.0


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _num(x, fmt="{:.3f}") -> str:
    return "—" if x is None else fmt.format(x)


def table(result: dict) -> str:
    b = result["baselines"]
    lines = [f"Machine: {result['machine']}. Probe test CER (greedy) with the demo's "
             f"architecture: random-init features "
             f"{_pct(b['probe_random'])} %, log-mel {_pct(b['probe_logmel'])} %.", "",
             "| variant | updates | pretrain s | accuracy | contrastive | code ppl | "
             "probe valid UER % | probe test CER % | random-init probe CER % | "
             "gap to random (points) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['updates']} | {_num(r['pretrain_seconds'], '{:.0f}')} "
                     f"| {_num(r['accuracy'])} | {_num(r['contrastive'])} "
                     f"| {_num(r['code_perplexity'], '{:.1f}')} | {_pct(r['probe_valid_uer'])} "
                     f"| {_pct(r['probe_test_cer'])} | {_pct(r['random_test_cer'])} "
                     f"| {_num(None if r['gap_to_random'] is None else 100 * r['gap_to_random'], '{:+.1f}')} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    b = result["baselines"]
    for ax, x, label in ((axes[0], "updates", "pretraining updates (30 s of audio each)"),
                         (axes[1], "pretrain_seconds", "pretraining seconds (this machine)")):
        for variant in dict.fromkeys(r["variant"] for r in result["rows"]):
            pts = sorted((r[x], 100 * r["gap_to_random"]) for r in result["rows"]
                         if r["variant"] == variant and r["gap_to_random"] is not None and r[x])
            if pts:
                ax.plot(*zip(*pts), marker="o", label=variant)
        if b["probe_random"] is not None and b["probe_logmel"] is not None:
            ax.axhline(100 * (b["probe_random"] - b["probe_logmel"]), color="grey", ls="--",
                       label="log-mel probe")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
    axes[0].set_ylabel("probe CER gain over random init (points)")
    axes[0].legend(fontsize=7)
    fig.suptitle("demo scale: frozen-feature CTC probe, test split")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def best_variant(result: dict) -> str | None:
    """The variant whose probe has the lowest *valid* UER at the largest budget that has one."""
    rows = [r for r in result["rows"] if r["probe_valid_uer"] is not None]
    if not rows:
        return None
    top = max(r["updates"] for r in rows)
    return min((r for r in rows if r["updates"] == top), key=lambda r: r["probe_valid_uer"])["variant"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated; `name@400+1600` gives one variant its own budgets")
    ap.add_argument("--budgets", default="400,1600", help="pretraining updates, comma-separated")
    ap.add_argument("--probe-updates", type=int, default=None, help="override the probes' updates")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per job")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--skip-done", action="store_true",
                    help="leave out jobs whose stages have all finished (extend a grid)")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds after which running jobs are stopped and results collected")
    ap.add_argument("overrides", nargs="*", help="extra overrides for every job")
    args = ap.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    grid = {}
    for item in args.variants.split(","):
        name, _, own = item.partition("@")
        grid[name] = [int(b) for b in own.split("+")] if own else budgets
    unknown = [v for v in grid if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if not args.collect_only:
        jobs = jobs_for(args.out, grid, args.probe_updates, args.overrides)
        if args.skip_done:
            jobs = [j for j in jobs if not all((j.out / s / "DONE").exists() for s in j.stages)]
        run_jobs(jobs, args.parallel, args.out / "logs", threads=args.threads,
                 deadline=args.deadline and time.time() + args.deadline)
    result = collect(args.out, grid)
    result["best_variant"] = best_variant(result)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    (args.out / "table.md").write_text(text)
    plot(result, args.out / "demo_scale.png")
    print(text)
    print(f"best variant (probe valid UER, largest budget): {result['best_variant']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
