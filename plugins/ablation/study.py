"""An ablation study file (``docs/ablations/STUDY.yaml``) and the runs it asks for.

A study names a base recipe, the overrides every variant shares, the variants (each a
mapping of dotted recipe keys to values, or a ``grid`` of values per key whose cross
product names itself), the seeds, and the metrics read back from each run directory::

    title: Quantization in wav2vec 2.0
    recipe: ../../recipes/demo.yaml          # relative to the study file
    overrides: {trainer.max_updates: 800}    # every variant
    variants:
      gumbel: {model.quantizer: {name: gumbel}}
      kmeans: {model.quantizer: {name: kmeans}}
      none:   {model.quantizer: null}
    seeds: [1, 2]
    seed_keys: [stages.finetune.trainer.seed]
    shared_stages: [pretrain]                # run once per variant, reused by its other seeds
    metrics:
      - {name: CER %, source: evaluate, stage: evaluate, model: finetune, key: cer, scale: 100}

Each (variant, seed) pair is one :class:`Run` with its own run directory.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from w2v.config import field, real
from w2v.config.source import load_yaml
from w2v.config.structure import structure
from w2v.errors import ConfigError

#: Characters allowed in a variant name (it names a directory).
_SAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


@attrs.define(kw_only=True)
class MetricSpec:
    """Where one column of the results table is read from in a variant's run directory."""

    name: str = field(help="column header, e.g. `CER %`")
    source: Literal["evaluate", "summary", "metrics"] = field(
        help="`evaluate`: a row of <stage>/results.json; `summary`: a key of "
             "<stage>/summary.json; `metrics`: a stat logged in metrics.jsonl")
    stage: str = field(help="stage id the value comes from")
    key: str = field(help="the value: `cer`/`wer` (evaluate), `best_value`/`updates`/... "
                          "(summary), a logged stat such as `loss` (metrics)")
    model: str | None = field(None, "evaluate: the evaluated model (default: the first row's)")
    decoder: str = field("greedy", "evaluate: the decoder of the row")
    split: Literal["train", "valid"] = field("train", "metrics: the rows of this split")
    reduce: Literal["last", "min", "max", "mean"] = field(
        "last", "metrics: how the logged values of the stage become one number")
    scale: float = real(1.0, None, None, "multiply the value by this (100 for percent)")
    higher_is_better: bool = field(False, "how the table's best value is chosen")


@attrs.define(kw_only=True)
class StudyConfig:
    """The study file, structured strictly (unknown keys are errors with file and line)."""

    title: str = field(help="the page's title")
    description: str = field("", "what the study asks, shown under the title")
    recipe: str = field(help="base recipe, relative to the study file")
    overrides: dict[str, Any] = field({}, "dotted key -> value applied to every variant")
    variants: dict[str, dict[str, Any]] = field(
        {}, "variant name -> {dotted key: value} (its one-line override)")
    grid: dict[str, list[Any]] = field(
        {}, "dotted key -> values; every combination is a variant named after its values")
    baseline: str | None = field(None, "variant the paired-bootstrap intervals compare with "
                                       "(default: the first)")
    seeds: list[int] = field([1], "seeds; each variant runs once per seed")
    seed_keys: list[str] = field(["trainer.seed"], "dotted keys set to the seed")
    shared_stages: list[str] = field(
        [], "stages run once per variant (by its first seed) and reused by its other seeds; "
            "the seed keys must not reach them")
    metrics: list[MetricSpec] = field(help="the results table's columns")


@attrs.frozen
class Run:
    """One variant at one seed: its name, the overrides that make it, its run directory."""

    variant: str
    seed: int
    overrides: tuple[str, ...]
    run_dir: Path

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


@attrs.frozen
class Study:
    """A loaded study: its config, file, stem (the page name) and variants in order."""

    config: StudyConfig
    path: Path
    variants: dict[str, dict[str, Any]]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def recipe(self) -> Path:
        return (self.path.parent / self.config.recipe).resolve()

    @property
    def baseline(self) -> str:
        return self.config.baseline or next(iter(self.variants))

    def runs(self, root: Path) -> list[Run]:
        """Every (variant, seed) run under ``root`` (``runs/ablations/<study>``), variant-major."""
        common = override_args(self.config.overrides)
        return [Run(variant=v, seed=s, run_dir=root / f"{v}-s{s}",
                    overrides=(*common, *override_args(changes),
                               *(f"{k}={s}" for k in self.config.seed_keys)))
                for v, changes in self.variants.items() for s in self.config.seeds]


def override_args(changes: dict[str, Any]) -> tuple[str, ...]:
    """``{"model.quantizer": {"name": "kmeans"}}`` -> ``("model.quantizer={name: kmeans}",)``,
    as ``w2vrun`` takes them on its command line."""
    return tuple(f"{key}={one_line(value)}" for key, value in changes.items())


def one_line(value: Any) -> str:
    """A value as one line of flow YAML (``null``, ``{name: kmeans}``, ``[1, 2]``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def grid_variants(grid: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """The cross product of ``grid``; each variant is named after its values
    (``{name: kmeans}`` -> ``kmeans``), joined with ``_``."""
    keys = list(grid)
    out = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        name = "_".join(_label(v) for v in values)
        out[name] = dict(zip(keys, values))
    return out


def _label(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        value = value["name"]
    return _SAFE.sub("-", one_line(value)).strip("-") or "x"


def load_study(path: str | Path) -> Study:
    """Read and check a study file; mistakes are ConfigErrors naming the file, line and key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file `{path}` does not exist.",
                          hint="Study files live in docs/ablations/ (`ls docs/ablations`).")
    data, srcmap = load_yaml(path)
    cfg = structure(data, StudyConfig, srcmap=srcmap)
    where = srcmap.where
    variants = dict(cfg.variants)
    for name, changes in grid_variants(cfg.grid).items() if cfg.grid else ():
        if name in variants:
            raise ConfigError(f"the grid makes a variant `{name}`, which `variants` also names.",
                              where=where(("grid",)), key="grid")
        variants[name] = changes
    if not variants:
        raise ConfigError("the study has no variants.", where=str(path), key="variants",
                          hint="Add `variants: {name: {dotted.key: value}, ...}` or a `grid:`.")
    for name in variants:
        if _SAFE.search(name):
            raise ConfigError(f"variant name `{name}` is used as a directory name; use letters, "
                              "digits and `_.+-` only.", where=where(("variants", name)),
                              key=f"variants.{name}")
    if cfg.baseline is not None and cfg.baseline not in variants:
        from w2v.errors import did_you_mean
        raise ConfigError(f"baseline `{cfg.baseline}` is not a variant.",
                          where=where(("baseline",)), key="baseline",
                          hint=did_you_mean(cfg.baseline, list(variants), "variants"))
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError("`seeds` must list distinct seeds.", where=where(("seeds",)),
                          key="seeds")
    study = Study(config=cfg, path=path, variants=variants)
    if not study.recipe.is_file():
        raise ConfigError(f"recipe `{cfg.recipe}` does not exist (looked for {study.recipe}).",
                          where=where(("recipe",)), key="recipe",
                          hint="The path is relative to the study file.")
    return study
