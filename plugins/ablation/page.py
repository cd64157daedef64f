"""The study's page (``docs/ablations/STUDY.md``): what varied, the results table, the
paired-bootstrap intervals, the plot, failures with their errors, and how it was made."""

from __future__ import annotations

import os
from pathlib import Path

import w2v

from .results import VariantResult
from .study import Study, one_line


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def cell(result: VariantResult, metric: str) -> str:
    """``12.3 ± 0.4`` (mean ± sample std over seeds), one value for one seed, ``failed``."""
    stats = result.mean_spread(metric)
    if stats is None:
        return "**failed**" if result.failed else "n/a"
    mean, spread, _ = stats
    return _fmt(mean) if spread is None else f"{_fmt(mean)} ± {_fmt(spread)}"


def what_varied(study: Study) -> list[str]:
    cfg = study.config
    common = ", ".join(f"`{k}={one_line(v)}`" for k, v in cfg.overrides.items())
    lines = ["## What varied", "",
             f"Every variant is `{_rel(study.recipe)}`" + (f" with {common}" if common else "")
             + f", run once per seed ({', '.join(map(str, cfg.seeds))}; the seed sets "
             + ", ".join(f"`{k}`" for k in cfg.seed_keys) + ")."]
    if cfg.shared_stages:
        lines[-1] += (" Stages " + ", ".join(f"`{s}`" for s in cfg.shared_stages) +
                      " run once per variant (by its first seed) and are shared by its seeds.")
    lines += ["", "| variant | override |", "| --- | --- |"]
    for name, changes in study.variants.items():
        tag = " (baseline)" if name == study.baseline else ""
        over = ", ".join(f"`{k}={one_line(v)}`" for k, v in changes.items()) or "(none)"
        lines.append(f"| `{name}`{tag} | {over} |")
    return lines


def results_table(study: Study, results: list[VariantResult]) -> list[str]:
    metrics = [m.name for m in study.config.metrics]
    lines = ["## Results", "", "| variant | " + " | ".join(metrics) + " | runs finished |",
             "| --- | " + " | ".join("---:" for _ in metrics) + " | --- |"]
    for r in results:
        done = sum(o.state == "done" for o in r.outcomes)
        status = f"{done} of {len(r.outcomes)}" + (" (**failed**)" if r.failed else "")
        lines.append(f"| `{r.variant}` | " + " | ".join(cell(r, m) for m in metrics) +
                     f" | {status} |")
    lines += ["", "Mean ± sample standard deviation over the seeds that finished (one value "
                  "when one seed did)."]
    return lines


def intervals(study: Study, results: list[VariantResult]) -> list[str]:
    rows = [(r, name, iv) for r in results for name, iv in r.intervals.items()]
    if not rows:
        return []
    lines = ["", f"Paired bootstrap against `{study.baseline}` (per-utterance CER; 95 % "
                 "interval of variant minus baseline over the test utterances of every seed "
                 "both finished, paired by seed and utterance; 2000 resamples):", "",
             "| variant | metric | difference | seeds | reading |", "| --- | --- | --- | ---: | --- |"]
    better = {m.name: m.higher_is_better for m in study.config.metrics}
    for r, name, (low, high, seeds) in rows:
        if low <= 0 <= high:
            reading = "includes 0: no difference shown"
        else:
            up = low > 0
            reading = "excludes 0: " + ("better" if up == better[name] else "worse")
        lines.append(f"| `{r.variant}` | {name} | {low:+.2f} to {high:+.2f} | {seeds} | "
                     f"{reading} |")
    return lines


def plain_words(study: Study, results: list[VariantResult]) -> list[str]:
    """One sentence per metric: the best variant by mean, and whether that means anything."""
    lines = []
    for spec in study.config.metrics:
        scored = [(r.mean_spread(spec.name), r) for r in results]
        scored = [(s[0], r) for s, r in scored if s is not None]
        if not scored:
            lines.append(f"- {spec.name}: no variant finished.")
            continue
        value, best = (max if spec.higher_is_better else min)(scored, key=lambda t: t[0])
        text = f"- {spec.name}: `{best.variant}` is best by mean ({_fmt(value)})"
        iv = best.intervals.get(spec.name)
        if best.variant == study.baseline:
            shown = [r.variant for r in results if spec.name in r.intervals
                     and not r.intervals[spec.name][0] <= 0 <= r.intervals[spec.name][1]]
            if any(spec.name in r.intervals for r in results):
                text += (f"; the intervals of {', '.join(f'`{v}`' for v in shown)} exclude 0"
                         if shown else "; no other variant's interval against it excludes 0, "
                                       "so this study does not show a difference")
        elif iv is not None:
            text += (", but its interval against the baseline includes 0, so this study does "
                     "not show it is better" if iv[0] <= 0 <= iv[1] else
                     ", and its interval against the baseline excludes 0")
        elif len(scored) > 1 and best.variant != study.baseline and max(
                len(r.values.get(spec.name, {})) for _, r in scored) < 2:
            text += " (one seed each: no spread to judge the difference by)"
        lines.append(text + ".")
    return ["", "In plain words:", *lines]


def problems(results: list[VariantResult]) -> list[str]:
    found = [(r, p) for r in results for p in r.problems]
    if not found:
        return []
    lines = ["", "## Failed runs and missing values", ""]
    for r, problem in found:
        lines.append(f"- {problem}")
    return lines


def write_page(study: Study, results: list[VariantResult], *, command: str, commit: str,
               hardware: list[str], runs_root: Path, plot: Path | None) -> Path:
    """Write ``<study>.md`` beside the study file and return its path."""
    page = study.path.with_suffix(".md")
    lines = [f"# {study.config.title}", "",
             f"<!-- Generated by `{command}`; edit {study.path.name}, not this page. -->", ""]
    if study.config.description:
        lines += [study.config.description.strip(), ""]
    lines += what_varied(study) + [""] + results_table(study, results)
    lines += intervals(study, results) + plain_words(study, results)
    if plot is not None:
        lines += ["", f"![{study.config.title}]({plot.name})"]
    lines += problems(results)
    lines += ["", "## How this page was made", "",
              "<!-- not-run: runs every variant of the study (long) -->",
              "```bash", command, "```", "",
              f"- w2v {w2v.__version__}, commit `{commit}`",
              f"- hardware: {'; '.join(hardware) if hardware else 'no run finished'}",
              f"- run directories: `{_rel(runs_root)}/<variant>-s<seed>/` (each an ordinary "
              "w2v run; `ablate.log` holds its output)"]
    page.write_text("\n".join(lines) + "\n")
    return page
