"""What ``w2vrun benchmark MODEL`` accepts, turned into a frozen model in eval mode.

``MODEL`` is, in this order:

- an existing path: a run or stage directory, ``model.pt``, a fairseq ``.pt`` or a Hugging
  Face directory (:func:`w2v.load_pretrained`);
- ``random:RECIPE``: the recipe's ``model:`` section built with random weights (seeded), its
  head left out;
- the name of a registered encoder (``logmel``, ``mfcc``, ...): that front end with its
  default settings, or ``NAME:key=value,key=value`` with others (``logmel:frame_shift_ms=20``
  for the demo's 50 Hz log-mel), and no context network.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from w2v.errors import ConfigError, UserError, did_you_mean

RANDOM = "random:"


@attrs.frozen(kw_only=True)
class LoadedModel:
    """A model to benchmark and how it was named (``kind``: checkpoint, random, frontend)."""

    model: torch.nn.Module
    spec: str
    kind: str
    label: str


def load_model(spec: str, *, seed: int = 1, sample_rate: int = 16000) -> LoadedModel:
    """The model ``spec`` names (see the module docstring), in eval mode on the CPU."""
    if Path(spec).exists():
        from w2v import load_pretrained

        return LoadedModel(model=load_pretrained(spec).eval(), spec=spec, kind="checkpoint",
                           label=_path_label(Path(spec)))
    if spec.startswith(RANDOM):
        recipe = spec[len(RANDOM):]
        model = random_model(recipe, seed=seed, sample_rate=sample_rate)
        return LoadedModel(model=model, spec=spec, kind="random",
                           label=f"random {Path(recipe).stem}")
    from w2v.plugin_manager import registry

    encoders = registry().names("encoder")
    name, _, options = spec.partition(":")
    if name in encoders:
        return LoadedModel(model=frontend_model(name, frontend_options(spec, options),
                                                sample_rate),
                           spec=spec, kind="frontend", label=spec)
    raise UserError(f"`{spec}` is not a model w2v can benchmark: no such file or directory, "
                    f"not `random:RECIPE`, and not a registered encoder.",
                    where="w2vrun benchmark",
                    hint="Give a run directory, model.pt, a fairseq .pt, a Hugging Face "
                         "directory, random:recipes/demo.yaml, or a front end. "
                         + did_you_mean(name, list(encoders), "front ends"))


def _path_label(path: Path) -> str:
    path = path.resolve()
    return f"{path.parent.name}/{path.name}" if path.name in ("model.pt", "checkpoint.pt") \
        else path.name


def random_model(recipe: str, *, seed: int, sample_rate: int = 16000) -> torch.nn.Module:
    """The ``model:`` section of ``recipe`` built with seeded random weights, no head."""
    from w2v.build import ModelConfig, build_model, inherited_values
    from w2v.config.recipe import load_recipe
    from w2v.config.structure import structure

    path = Path(recipe)
    if not path.is_file():
        raise ConfigError(f"`random:{recipe}`: the recipe `{recipe}` does not exist.",
                          where="w2vrun benchmark",
                          hint="Name a recipe file, e.g. random:recipes/demo.yaml.")
    raw = load_recipe(path)
    section = raw.data.get("model")
    if not section:
        raise ConfigError(f"`{recipe}` has no `model:` section to build.",
                          where=raw.srcmap.where(()), key="model")
    cfg = structure(section, ModelConfig, srcmap=raw.srcmap, path=("model",),
                    inherited=inherited_values(raw.data, raw.srcmap))
    rate = int((raw.data.get("data") or {}).get("sample_rate") or sample_rate)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(attrs.evolve(cfg, head=None), rate)
    return model.eval()


def frontend_options(spec: str, options: str) -> dict:
    """``key=value,key=value`` -> ``{key: value}`` (values read as YAML scalars)."""
    import yaml

    out = {}
    for item in filter(None, (o.strip() for o in options.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"`{spec}`: front-end options are `key=value` pairs separated by "
                              f"commas, found `{item}`.", where="w2vrun benchmark",
                              hint="For example logmel:frame_shift_ms=20,num_mel_bins=40.")
        out[key.strip()] = yaml.safe_load(value)
    return out


def frontend_model(name: str, options: dict | None = None, sample_rate: int = 16000
                   ) -> torch.nn.Module:
    """The registered encoder ``name`` (with ``options`` over its defaults) as a model on its
    own; unknown options are the usual config error naming the nearest field."""
    from w2v.build import ModelConfig, build_model
    from w2v.config.structure import structure_component

    spec = structure_component("encoder", {"name": name, **(options or {})},
                               path="model.encoder")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)   # a front end with trainable parts starts the same every time
        return build_model(ModelConfig(encoder=spec), sample_rate).eval()
