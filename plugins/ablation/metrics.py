"""Reading a study's metrics back from a finished run directory.

- ``evaluate``: a row of ``<stage>/results.json`` (the evaluate stage), chosen by model and
  decoder; its per-utterance errors file (``errors_file``) makes CER paired-bootstrappable.
- ``summary``: a key of ``<stage>/summary.json`` (training stages: ``best_value``,
  ``updates``, ``seconds``, ...).
- ``metrics``: a stat the stage logged to ``metrics.jsonl``, reduced over the logged rows of
  one split (last, min, max or mean).
"""

from __future__ import annotations

import json
from pathlib import Path

from .study import MetricSpec


class MetricMissing(Exception):
    """The run directory does not have the value a metric names (the message says why)."""


def read_metric(run_dir: Path, spec: MetricSpec) -> float:
    """The metric's value for one run, scaled."""
    reader = {"evaluate": _evaluate, "summary": _summary, "metrics": _logged}[spec.source]
    value = reader(Path(run_dir), spec)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise MetricMissing(f"`{spec.key}` of stage `{spec.stage}` is {value!r}, not a number")
    return float(value) * spec.scale


def evaluate_row(run_dir: Path, spec: MetricSpec) -> dict:
    """The results.json row a metric names (first row of ``spec.model`` with ``spec.decoder``)."""
    path = run_dir / spec.stage / "results.json"
    if not path.is_file():
        raise MetricMissing(f"no {path.relative_to(run_dir)}")
    rows = json.loads(path.read_text())["results"]
    model = spec.model or (rows[0]["model"] if rows else None)
    for row in rows:
        if row["model"] == model and row["decoder"] == spec.decoder:
            return row
    found = ", ".join(f"{r['model']}/{r['decoder']}" for r in rows) or "none"
    raise MetricMissing(f"{path.relative_to(run_dir)} has no row for model `{model}` with "
                        f"decoder `{spec.decoder}` (rows: {found})")


def utterance_errors(run_dir: Path, spec: MetricSpec) -> Path | None:
    """The per-utterance errors file behind a CER metric, or None when the metric is not a
    per-utterance CER (the paired bootstrap of the report stage needs character counts)."""
    if spec.source != "evaluate" or spec.key != "cer":
        return None
    try:
        row = evaluate_row(Path(run_dir), spec)
    except MetricMissing:
        return None
    path = Path(run_dir) / spec.stage / row.get("errors_file", "")
    return path if "errors_file" in row and path.is_file() else None


def _evaluate(run_dir: Path, spec: MetricSpec):
    row = evaluate_row(run_dir, spec)
    if spec.key not in row:
        raise MetricMissing(f"results rows have no `{spec.key}` (keys: {', '.join(row)})")
    return row[spec.key]


def _summary(run_dir: Path, spec: MetricSpec):
    path = run_dir / spec.stage / "summary.json"
    if not path.is_file():
        raise MetricMissing(f"no {spec.stage}/summary.json")
    summary = json.loads(path.read_text())
    if spec.key not in summary:
        raise MetricMissing(f"{spec.stage}/summary.json has no `{spec.key}` "
                            f"(keys: {', '.join(summary)})")
    return summary[spec.key]


def _logged(run_dir: Path, spec: MetricSpec):
    path = run_dir / "metrics.jsonl"
    values = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("stage") == spec.stage and row.get("split", "train") == spec.split \
                    and isinstance(row.get(spec.key), (int, float)):
                values.append(float(row[spec.key]))
    if not values:
        raise MetricMissing(f"metrics.jsonl has no `{spec.key}` logged by stage `{spec.stage}` "
                            f"on split `{spec.split}`")
    if spec.reduce == "last":
        return values[-1]
    return {"min": min, "max": max, "mean": lambda v: sum(v) / len(v)}[spec.reduce](values)
