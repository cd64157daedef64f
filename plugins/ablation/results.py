"""A study's results: each variant's metric values over seeds, its failures, and paired-
bootstrap intervals against the baseline where the metric is per-utterance (CER).

The intervals reuse the report stage's :func:`~w2v.plugins.stages.report.cer_gap_interval`,
over the utterances of every seed both variants finished (utterances paired by seed and id).
"""

from __future__ import annotations

import csv
import statistics
import tempfile
from pathlib import Path

import attrs

from .metrics import MetricMissing, read_metric, utterance_errors
from .runs import Outcome
from .study import Study


@attrs.define
class VariantResult:
    """One variant: its runs' outcomes, metric values of its finished runs (by seed) and the
    problems (failed or missing runs, unreadable metrics), each with its error."""

    variant: str
    outcomes: list[Outcome]
    values: dict[str, dict[int, float]] = attrs.field(factory=dict)
    problems: list[str] = attrs.field(factory=list)
    intervals: dict[str, tuple[float, float, int]] = attrs.field(factory=dict)

    @property
    def failed(self) -> bool:
        return any(o.state != "done" for o in self.outcomes)

    def mean_spread(self, metric: str) -> tuple[float, float | None, int] | None:
        """(mean, sample standard deviation or None for one seed, seeds) of a metric."""
        values = list(self.values.get(metric, {}).values())
        if not values:
            return None
        spread = statistics.stdev(values) if len(values) > 1 else None
        return statistics.fmean(values), spread, len(values)


def collect(study: Study, outcomes: list[Outcome]) -> list[VariantResult]:
    """Every variant's result, in study order; a failed run is kept with its error."""
    by_variant: dict[str, VariantResult] = {v: VariantResult(v, []) for v in study.variants}
    for out in outcomes:
        result = by_variant[out.run.variant]
        result.outcomes.append(out)
        if out.state == "failed":
            result.problems.append(f"`{out.run.name}` failed: {out.error}")
            continue
        if out.state == "missing":
            result.problems.append(f"`{out.run.name}` has not run")
            continue
        for spec in study.config.metrics:
            try:
                result.values.setdefault(spec.name, {})[out.run.seed] = \
                    read_metric(out.run.run_dir, spec)
            except MetricMissing as exc:
                result.problems.append(f"`{out.run.name}` finished, but its {spec.name} is "
                                       f"missing (shown as n/a): {exc}")
    results = list(by_variant.values())
    add_intervals(study, results)
    return results


def add_intervals(study: Study, results: list[VariantResult]) -> None:
    """95 % paired-bootstrap interval of (variant - baseline) for each per-utterance metric,
    in the metric's units, with the number of seeds pooled."""
    from w2v.plugins.stages.report import cer_gap_interval

    base = next(r for r in results if r.variant == study.baseline)
    for spec in study.config.metrics:
        base_files = _errors_by_seed(base, spec)
        if not base_files:
            continue
        for result in results:
            if result is base:
                continue
            files = _errors_by_seed(result, spec)
            seeds = sorted(files.keys() & base_files.keys())
            if not seeds:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                ours = pool_errors([files[s] for s in seeds], seeds, Path(tmp) / "variant.tsv")
                theirs = pool_errors([base_files[s] for s in seeds], seeds, Path(tmp) / "base.tsv")
                low, high = cer_gap_interval(theirs, ours)   # baseline - variant, in points
            scale = spec.scale / 100.0
            result.intervals[spec.name] = (-high * scale, -low * scale, len(seeds))


def _errors_by_seed(result: VariantResult, spec) -> dict[int, Path]:
    files = {}
    for out in result.outcomes:
        if out.state == "done" and spec.name in result.values \
                and out.run.seed in result.values[spec.name]:
            path = utterance_errors(out.run.run_dir, spec)
            if path is not None:
                files[out.run.seed] = path
    return files


def pool_errors(paths: list[Path], seeds: list[int], out: Path) -> Path:
    """One errors file of several seeds' files, each utterance id prefixed ``s<seed>/``."""
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = None
        for seed, path in zip(seeds, paths):
            with open(path, encoding="utf-8", newline="") as src:
                reader = csv.DictReader(src, delimiter="\t", quoting=csv.QUOTE_NONE)
                if writer is None:
                    writer = csv.DictWriter(fh, reader.fieldnames, delimiter="\t",
                                            quoting=csv.QUOTE_NONE, escapechar="\\")
                    writer.writeheader()
                for row in reader:
                    writer.writerow({**row, "utterance": f"s{seed}/{row['utterance']}"})
    return out
