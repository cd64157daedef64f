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
            out = context.output_of(sid)
            results = json.loads((out / "results.json").read_text())
            for r in results["results"]:
                errors = {"errors_path": out / r["errors_file"]} if "errors_file" in r else {}
                rows.append({**r, "split": results["split"], **errors})
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
    from .evaluate import decoder_label

    lines = ["| model | decoder | split | CER % | WER % | utterances |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        flag = " (degenerate)" if r.get("warning") else ""
        lines.append(f"| {r['model']}{flag} | {decoder_label(r)} | {r['split']} | "
                     f"{100 * r['cer']:.1f} | {100 * r['wer']:.1f} | {r['utterances']} |")
    return "\n".join(lines)


#: A best CER at or above this means no system transcribes: gaps between them mean little.
NEAR_CHANCE_CER = 0.9


def cer_gap_interval(baseline_tsv: Path, other_tsv: Path, rounds: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """95 % paired-bootstrap interval of CER(baseline) - CER(other) in points, resampling the
    utterances both systems decoded (Bisani & Ney, 2004). Reads the evaluate stage's
    per-utterance error files."""
    import numpy as np

    a, b = _char_counts(baseline_tsv), _char_counts(other_tsv)
    ids = sorted(a.keys() & b.keys())
    if not ids:
        return (float("nan"), float("nan"))
    errors_a, errors_b, chars = (np.array([a[i][0] for i in ids]), np.array([b[i][0] for i in ids]),
                                 np.array([a[i][1] for i in ids]))
    draw = np.random.default_rng(seed).integers(0, len(ids), (rounds, len(ids)))
    gaps = 100 * (errors_a[draw].sum(1) - errors_b[draw].sum(1)) / np.maximum(chars[draw].sum(1), 1)
    low, high = np.percentile(gaps, [2.5, 97.5])
    return float(low), float(high)


def _char_counts(tsv: Path) -> dict[str, tuple[int, int]]:
    """utterance -> (character errors, reference characters) from an errors file."""
    import csv

    with open(tsv, encoding="utf-8", newline="") as f:
        return {r["utterance"]: (int(r["char_errors"]), int(r["chars"]))
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}


def summarize(rows: list[dict], baseline: str | None, compare: list[str]) -> str:
    """One line comparing each model's best CER with the baseline's. Where the rows carry
    their per-utterance error files, a gap whose 95 % paired-bootstrap interval contains 0 is
    called a tie, not a win."""
    best: dict[str, dict] = {}
    for r in rows:
        if r["model"] not in best or r["cer"] < best[r["model"]]["cer"]:
            best[r["model"]] = r
    if baseline is None or baseline not in best:
        return "Lower is better for both CER and WER."
    base = best[baseline]
    parts = []
    for name in compare or [m for m in best if m != baseline]:
        if name not in best:
            continue
        other = best[name]
        gap = 100 * (base["cer"] - other["cer"])
        cers = f"{100 * other['cer']:.1f}% vs {100 * base['cer']:.1f}%"
        if "errors_path" in base and "errors_path" in other:
            low, high = cer_gap_interval(base["errors_path"], other["errors_path"])
            verdict = "beats" if low > 0 else "is worse than" if high < 0 else "is on par with"
            parts.append(f"`{name}` {verdict} `{baseline}`: {gap:+.1f} CER points ({cers}; "
                         f"95% interval {low:+.1f} to {high:+.1f})")
        else:
            parts.append(f"`{name}` {'beats' if gap > 0 else 'does not beat'} `{baseline}` by "
                         f"{gap:+.1f} CER points ({cers})")
    if not parts:
        return "Lower is better for both CER and WER."
    line = "; ".join(parts) + "."
    if min(r["cer"] for r in best.values()) >= NEAR_CHANCE_CER:
        line += (f" Every system is at {100 * NEAR_CHANCE_CER:.0f}% CER or worse: none has learned "
                 "to transcribe at this budget, so these gaps do not show that one representation "
                 "is better (docs/demo-scale.md).")
    elif any("errors_path" in r for r in best.values()):
        line += (" A gap counts when its 95% paired-bootstrap interval over the test utterances "
                 "excludes 0.")
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
