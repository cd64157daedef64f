"""The ``report`` stage: the results table, training curves as PNG, and what they mean.

It reads ``results.json`` of the evaluate stages it lists and the run's
``metrics.jsonl``, prints a CER/WER table (and writes it to ``report.md``),
and plots every training stage's curves (loss, accuracy, code perplexity,
validation error rates) to ``<stage dir>/<stage>.png``.
"""

from __future__ import annotations

import json
import logging
import math
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
    from w2v.plugins.ctc.evaluation import decoder_label

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
    """How to read the table, one line per comparison with the baseline and notes.

    Each model is taken at its best decoder (lowest CER) and the decoder is named on both
    sides. Where the rows carry their per-utterance error files, a difference whose 95 %
    paired-bootstrap interval contains 0 is called a tie, not a win. Notes explain a WER
    above 100 % and a word LM that raised CER, when the table has them."""
    best: dict[str, dict] = {}
    for r in rows:
        if r["model"] not in best or r["cer"] < best[r["model"]]["cer"]:
            best[r["model"]] = r
    lines = []
    if baseline is not None and baseline in best:
        base = best[baseline]
        lines = [f"- {compare_line(best[name], base)}"
                 for name in compare or [m for m in best if m != baseline] if name in best]
    text = "Lower is better for both CER and WER."
    if lines:
        text = (f"Each model at its best decoder (lowest CER), against `{baseline}`; lower is "
                "better for both CER and WER:\n" + "\n".join(lines))
        if min(r["cer"] for r in best.values()) >= NEAR_CHANCE_CER:
            text += (f"\nEvery system is at {100 * NEAR_CHANCE_CER:.0f}% CER or worse: none has "
                     "learned to transcribe at this budget, so these gaps do not show that one "
                     "representation is better (docs/demo-scale.md).")
        elif any("errors_path" in r for r in best.values()):
            text += ("\nA difference counts when its 95% paired-bootstrap interval over the test "
                     "utterances excludes 0.")
    notes = [n for n in (wer_note(rows), lm_note(rows), layer_note(rows)) if n]
    return "\n".join([text, *notes])


def _system(row: dict) -> str:
    decoder = row.get("decoder")
    return f"`{row['model']}` ({decoder} decoder)" if decoder else f"`{row['model']}`"


def compare_line(other: dict, base: dict) -> str:
    """``other`` against ``base`` in CER points, in words: "CER is 3.4 points higher (worse)"."""
    diff = 100 * (other["cer"] - base["cer"])
    if round(diff, 1) == 0:
        change = "CER is the same"
    else:
        change = f"CER is {abs(diff):.1f} points {'higher (worse)' if diff > 0 else 'lower (better)'}"
    line = (f"{_system(other)} against {_system(base)}: {change}, "
            f"{100 * other['cer']:.1f}% vs {100 * base['cer']:.1f}%")
    if "errors_path" in base and "errors_path" in other:
        low, high = cer_gap_interval(base["errors_path"], other["errors_path"])
        low, high = -high, -low                       # other - base, as the sentence says
        verdict = ("excludes 0: a real difference" if low > 0 or high < 0 else
                   "includes 0: on par")
        line += (f"; the 95% interval of the difference, {low:+.1f} to {high:+.1f} points, "
                 f"{verdict}")
    return line + "."


def wer_note(rows: list[dict]) -> str | None:
    """Why a WER above 100 % is possible, when the table has one."""
    over = sorted({r["model"] for r in rows if r["wer"] > 1.0})
    if not over:
        return None
    return (f"WER is above 100 % for {', '.join(f'`{m}`' for m in over)}: WER counts "
            "substituted, deleted and inserted words against the number of reference words, so "
            "a hypothesis with more words than the reference, most of them wrong, scores above "
            "100 %.")


def lm_note(rows: list[dict]) -> str | None:
    """Why a word LM can raise CER, when it did for some model (against its greedy row)."""
    greedy = {r["model"]: r for r in rows if r.get("decoder") == "greedy"}
    raised = [(r, greedy[r["model"]]) for r in rows if r.get("decoder") not in (None, "greedy")
              and r["model"] in greedy and r["cer"] > greedy[r["model"]]["cer"]]
    if not raised:
        return None
    which = ", ".join(f"`{r['model']}` ({r['decoder']} {100 * r['cer']:.1f}% vs greedy "
                      f"{100 * g['cer']:.1f}%)" for r, g in raised)
    return (f"The word LM raised CER for {which}: when the letters are far off, the beam search "
            "can only spell words of its lexicon, and a wrong whole word costs more letters than "
            "the garbled letters it replaced (the LM helps once most letters are right).")


def layer_note(rows: list[dict]) -> str | None:
    """Which hidden states each weighted-layer probe learned to read, when there are some."""
    seen: dict[str, dict[str, float]] = {}
    for r in rows:
        if len(r.get("layer_weights") or {}) > 1:
            seen.setdefault(r["model"], r["layer_weights"])
    if not seen:
        return None
    parts = []
    for model, weights in seen.items():
        top = max(weights, key=weights.get)
        listed = ", ".join(f"{name} {w:.2f}" for name, w in weights.items())
        parts.append(f"`{model}` ({listed}; heaviest: {_layer(top)})")
    return ("Learned layer weights of the weighted-layer probes (`input` is what enters the "
            "context network, then each block): " + "; ".join(parts) + ".")


def _layer(name: str) -> str:
    return name if name in ("input", "encoder") else f"block {name}"


#: Plot titles a newcomer can read.
TITLES = {"loss": "loss", "accuracy": "accuracy (masked frames)",
          "code_perplexity": "code perplexity (codes in use)",
          "prob_perplexity": "codebook perplexity (soft)", "uer": "UER % (unit error rate)",
          "wer": "WER", "lr": "learning rate"}

Curves = dict[tuple[str, str], list[tuple[int, float]]]


def read_curves(metrics_path: Path) -> dict[str, Curves]:
    """stage -> (stat, split) -> [(update, value)] for :data:`CURVES` and
    ``contrastive_chance``, from ``metrics.jsonl``."""
    series: dict[str, Curves] = defaultdict(lambda: defaultdict(list))
    for line in metrics_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        split = rec.get("split", "train")
        for key in (*CURVES, "contrastive_chance"):
            value = rec.get(key)
            if isinstance(value, (int, float)) and "step" in rec:
                series[rec.get("stage", "?")][(key, split)].append((rec["step"], float(value)))
    return series


def chance_accuracy(curves: Curves) -> float | None:
    """The accuracy of guessing among the contrastive candidates, ``exp(-contrastive_chance)``
    averaged over the logged points (``1 / (distractors + 1)`` when none is excluded), or
    None when the stage logged no ``contrastive_chance``."""
    values = [v for split in ("train", "valid") for _, v in curves.get(("contrastive_chance",
                                                                        split), [])]
    if not values:
        return None
    return sum(math.exp(-v) for v in values) / len(values)


def stage_figure(stage: str, curves: Curves):
    """A matplotlib figure: one panel per logged curve, train as a line, validation points
    marked, a chance line on a contrastive accuracy panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in CURVES if any(c[0] == k for c in curves)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.0), squeeze=False)
    chance = chance_accuracy(curves)
    for ax, key in zip(axes[0], keys):
        for split in ("train", "valid"):
            pts = curves.get((key, split))
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if split == "valid" else None, ms=3, label=split)
        if key == "accuracy" and chance is not None:
            ax.axhline(chance, color="gray", linestyle="--", linewidth=1,
                       label=f"chance ({chance:.3f})")
        ax.set_title(TITLES.get(key, key), fontsize=9)
        ax.set_xlabel("update")
        ax.legend(fontsize=7)
    fig.suptitle(stage)
    fig.tight_layout()
    return fig


def plot_curves(metrics_path: Path, out_dir: Path) -> list[Path]:
    """One PNG per training stage with its logged curves (:func:`stage_figure`)."""
    if not metrics_path.exists():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for stage, curves in read_curves(metrics_path).items():
        if not any(key in CURVES for key, _ in curves):
            continue
        fig = stage_figure(stage, curves)
        path = out_dir / f"{stage}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
