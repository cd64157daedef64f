"""The wav2vec-U hyperparameter sweep: a grid over the GAN objective's weights and the seed.

``train_gan``'s ``sweep: {code_penalty: [2, 4], gradient_penalty: [1.5, 2.0], seed: [0, 1]}``
trains one sub-run per point of the cross product (keys in the order written, the last
varying fastest), each in ``<stage dir>/<name>/`` with its checkpoints in
``checkpoints/<stage>/<name>/``; ``select_gan`` then ranks every checkpoint of every
sub-run by the unsupervised metric (fairseq: ``fairseq-hydra-train -m`` over the same
keys, README of ``examples/wav2vec/unsupervised``). Keys are fields of the stage's
objective config, plus ``seed``, which sets ``trainer.seed`` and ``data.seed`` (fairseq's
``common.seed`` seeds the initialisation, the batch order and the text sampling alike).
The list of sub-runs is written to ``<stage dir>/sweep.json`` for ``select_gan``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import attrs

from w2v.errors import ConfigError, UserError, did_you_mean

SEED = "seed"
SWEEP_FILE = "sweep.json"


@attrs.frozen
class Configuration:
    """One point of the grid: its values by key, in the grid's key order."""

    values: dict[str, Any]

    @property
    def name(self) -> str:
        """The sub-run's directory name: ``code_penalty=2__seed=0`` (fairseq's hydra
        ``override_dirname`` uses ``__`` between items too)."""
        return "__".join(f"{k}={_text(v)}" for k, v in self.values.items())

    def apply(self, sections):
        """``sections`` (:class:`w2v.build.Sections`) with this point's values set."""
        objective = {k: v for k, v in self.values.items() if k != SEED}
        out = attrs.evolve(sections, objective=sections.objective.evolve(**objective))
        if SEED in self.values:
            seed = self.values[SEED]
            out = attrs.evolve(out, trainer=attrs.evolve(out.trainer, seed=seed))
            if hasattr(out.data, "seed"):
                out = attrs.evolve(out, data=attrs.evolve(out.data, seed=seed))
        return out


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def expand(grid: dict[str, list[Any]] | None) -> list[Configuration]:
    """Every point of ``grid``'s cross product, in order (``[]`` for an empty grid)."""
    if not grid:
        return []
    keys = list(grid)
    return [Configuration(dict(zip(keys, point)))
            for point in itertools.product(*(grid[k] for k in keys))]


def check_grid(grid: dict[str, list[Any]] | None, objective, max_configs: int) -> None:
    """Raise a :class:`ConfigError` (key ``sweep.<key>``, relative to the stage) for a key
    that is neither an objective field nor ``seed``, an empty or repeating value list, a
    value the field does not accept, or more than ``max_configs`` points."""
    from w2v.config.structure import structure, yaml_name

    if not grid:
        return
    if objective is None:
        raise ConfigError("sweeps the objective's settings, but the stage has no `objective:`.",
                          key="sweep")
    fields = {yaml_name(f.name): f for f in attrs.fields(type(objective.config)) if f.init}
    valid = [*fields, SEED]
    for key, values in grid.items():
        if key not in valid:
            raise ConfigError(f"`{key}` is not a setting of the `{objective.name}` objective "
                              f"nor `seed`, so it cannot be swept.", key=f"sweep.{key}",
                              hint=did_you_mean(key, valid, "keys"))
        if not values:
            raise ConfigError("has no values: a swept key needs at least one.",
                              key=f"sweep.{key}", hint=f"Give a list, e.g. `{key}: [...]`, "
                                                       f"or remove the key.")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"repeats a value ({values}): two sub-runs would be the same.",
                              key=f"sweep.{key}")
        for i, value in enumerate(values):
            if not isinstance(value, (bool, int, float, str)):
                raise ConfigError(f"expected numbers (or other single values), found {value!r}.",
                                  key=f"sweep.{key}.{i}", hint="A sweep varies one setting "
                                                               "per key.")
            try:
                if key == SEED:
                    seed = structure(value, int)
                    if not 0 <= seed < 1 << 31:
                        raise ConfigError(f"must be between 0 and {(1 << 31) - 1}, found {seed}.")
                else:
                    objective.evolve(**{fields[key].name: structure(value, fields[key].type)})
            except UserError as exc:
                raise ConfigError(exc.message, key=f"sweep.{key}.{i}", hint=exc.hint) from None
    count = len(expand(grid))
    if count > max_configs:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in grid.items())
        raise ConfigError(f"has {count} configurations ({sizes}), more than `max_configs` "
                          f"({max_configs}); each trains a GAN of its own.", key="sweep",
                          hint=f"Drop values, or raise `max_configs` to {count} if that is "
                               f"what you mean.")


def write_sweep(stage_dir: Path, configurations: list[Configuration]) -> Path:
    """``<stage dir>/sweep.json``: each sub-run's name and values, in order."""
    path = Path(stage_dir) / SWEEP_FILE
    path.write_text(json.dumps({"configurations": [{"name": c.name, "values": c.values}
                                                   for c in configurations]}, indent=2) + "\n")
    return path


def read_sweep(stage_dir: Path) -> list[str] | None:
    """The sub-run names of a swept ``train_gan`` stage directory, or None for one run."""
    path = Path(stage_dir) / SWEEP_FILE
    if not path.is_file():
        return None
    return [c["name"] for c in json.loads(path.read_text())["configurations"]]
