"""The ``report`` stage: the results table, training curves as PNG, and what they mean.

It reads ``results.json`` of the evaluate stages it lists and the run's
``metrics.jsonl``, prints a CER/WER table (and writes it to ``report.md``),
and plots every training stage's curves (loss, accuracy, code perplexity,
validation error rates) to ``<stage dir>/<stage>.png``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import attrs

from w2v.config import field
from w2v.interfaces import Stage

log = logging.getLogger("w2v")

#: Curves worth plotting when a stage logged them, in this order.
CURVES = ("loss", "accuracy", "code_perplexity", "prob_perplexity", "uer", "wer", "lr")


@attrs.define(kw_only=True)
class ReportConfig:
    evaluations: list[str] = field(help="evaluate stages whose results.json to tabulate")
    baseline: str | None = field(None, "model (stage id) the one-line summary compares against")
    compare: list[str] = field([], "models the summary compares with the baseline")


class ReportStage(Stage):
    """Print the CER/WER table, plot the training curves, say what the numbers mean."""

    Config = ReportConfig

    def run(self, context) -> None:
        rows = []
        for sid in self.config.evaluations:
            results = json.loads((context.output_of(sid) / "results.json").read_text())
            rows += [{**r, "split": results["split"]} for r in results["results"]]
        table = format_table(rows)
        summary = summarize(rows, self.config.baseline, self.config.compare)
        stage_dir = Path(context.stage_dir)
        plots = plot_curves(context.metrics_path, stage_dir)
        text = table + "\n\n" + summary + "\n"
        if plots:
            text += "\nTraining curves: " + ", ".join(p.name for p in plots) + "\n"
        (stage_dir / "report.md").write_text(text)
        print("\n" + text)


def format_table(rows: list[dict]) -> str:
    lines = ["| model | decoder | split | CER % | WER % | utterances |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        flag = " (degenerate)" if r.get("warning") else ""
        lines.append(f"| {r['model']}{flag} | {r['decoder']} | {r['split']} | "
                     f"{100 * r['cer']:.1f} | {100 * r['wer']:.1f} | {r['utterances']} |")
    return "\n".join(lines)


#: A best CER at or above this means no system transcribes: gaps between them mean little.
NEAR_CHANCE_CER = 0.9


def summarize(rows: list[dict], baseline: str | None, compare: list[str]) -> str:
    """One line comparing each model's best CER with the baseline's."""
    best: dict[str, float] = {}
    for r in rows:
        best[r["model"]] = min(best.get(r["model"], 1e9), r["cer"])
    if baseline is None or baseline not in best:
        return "Lower is better for both CER and WER."
    parts = []
    for name in compare or [m for m in best if m != baseline]:
        if name in best:
            gap = 100 * (best[baseline] - best[name])
            parts.append(f"`{name}` {'beats' if gap > 0 else 'does not beat'} `{baseline}` by "
                         f"{gap:+.1f} CER points ({100 * best[name]:.1f}% vs "
                         f"{100 * best[baseline]:.1f}%)")
    if not parts:
        return "Lower is better for both CER and WER."
    line = "; ".join(parts) + "."
    if min(best.values()) >= NEAR_CHANCE_CER:
        line += (f" Every system is at {100 * NEAR_CHANCE_CER:.0f}% CER or worse: none has learned "
                 "to transcribe at this budget, so these gaps do not show that one representation "
                 "is better (docs/demo-scale.md).")
    return line


def plot_curves(metrics_path: Path, out_dir: Path) -> list[Path]:
    """One PNG per training stage with its logged curves (train and valid)."""
    if not metrics_path.exists():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[tuple[str, str], list[tuple[int, float]]]] = defaultdict(
        lambda: defaultdict(list))
    for line in metrics_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        split = rec.get("split", "train")
        for key in CURVES:
            value = rec.get(key)
            if isinstance(value, (int, float)) and "step" in rec:
                series[rec.get("stage", "?")][(key, split)].append((rec["step"], float(value)))
    paths = []
    for stage, curves in series.items():
        keys = [k for k in CURVES if any(c[0] == k for c in curves)]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.0), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for split in ("train", "valid"):
                pts = curves.get((key, split))
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="o" if split == "valid" else None, ms=3, label=split)
            ax.set_title(key)
            ax.set_xlabel("update")
            ax.legend(fontsize=7)
        fig.suptitle(stage)
        fig.tight_layout()
        path = out_dir / f"{stage}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
