"""The vq-wav2vec + BERT pipeline stages: ``export_units`` and ``featurize_units``.

* ``export_units``: the discrete units of an earlier stage's model (``from:
  pretrain``) for the chosen splits of ``data:`` (and any extra manifests):
  ``<split>.src``, ``<split>.tsv``, ``dict.src.txt``, ``units.json``
  (:mod:`.units`).
* BERT trains in a ``train`` stage over ``data: {name: units, path:
  export_units}`` (``model.encoder: {name: unit_embedding}`` + a context
  network, ``objective: {name: bert}``); the unit dictionary sizes the embedding.
* ``featurize_units``: the trained model's features of every exported split,
  as ``w2vrun featurize`` writes them (``<split>_0_1.npy`` fp16 ``[frames, D]``,
  ``.len``, ``.tsv``, plus ``features.json``), ready for a ``train`` stage over
  the ``features`` data source (a CTC model on BERT features).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import attrs
import torch

from w2v.config import field, real, size
from w2v.errors import ConfigError, did_you_mean
from w2v.interfaces import Stage

log = logging.getLogger("w2v")

Device = Literal["auto", "cpu", "cuda"]
SPLITS = ("train", "valid", "test")


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("`device: cuda` was asked for, but torch sees no CUDA GPU.",
                          key="device", hint="Use `device: auto` or `cpu`.")
    return name


def source_dir(ref: str, context, key: str) -> Path:
    """An earlier stage's directory (it must have completed) or an existing path."""
    if ref in context.plans:
        return context.output_of(ref)
    path = Path(ref).expanduser()
    if not path.exists():
        raise ConfigError(f"`{ref}` is neither a stage of this recipe nor an existing path.",
                          key=f"stages.{context.stage_id}.{key}",
                          hint=did_you_mean(ref, list(context.plans), "stage ids"))
    return path


def stage_manifests(splits, extra, data, sid: str) -> dict[str, str]:
    """``{name: manifest path}``: the chosen splits of ``data:`` (null: every split set there)
    and the extra ``name: path`` manifests (``CORPUS:SPLIT`` references resolved)."""
    from w2v.data.loader import resolve_corpus, resolve_manifest

    names = splits if splits is not None else [s for s in SPLITS if data.manifest(s) is not None]
    out = {}
    for split in names:
        if split not in SPLITS:
            raise ConfigError(f"unknown data split `{split}`.", key=f"stages.{sid}.splits",
                              hint=did_you_mean(split, list(SPLITS)) +
                              " Other manifests go under `manifests:`.")
        out[split] = resolve_manifest(data, split)
    for name, path in extra.items():
        if name in out:
            raise ConfigError(f"`{name}` is both a split and a manifest name.",
                              key=f"stages.{sid}.manifests.{name}")
        out[name] = resolve_corpus(path, f"stages.{sid}.manifests.{name}")
    if not out:
        raise ConfigError("nothing to do: no split is set in `data:` and `manifests` is "
                          "empty.", key=f"stages.{sid}.splits")
    return out


# ------------------------------------------------------------------ export_units
@attrs.define(kw_only=True)
class ExportUnitsConfig:
    from_: str = field(help="the stage (or a w2v / fairseq checkpoint path) whose quantizer "
                            "makes the units")
    splits: list[str] | None = field(None, "splits of `data:` to export (train, valid, test; "
                                           "null: every split set there)")
    manifests: dict[str, str] = field({}, "more manifests to export, `name: path` (or "
                                          "`CORPUS:SPLIT`), e.g. a labelled split for a "
                                          "downstream model")
    dictionary_split: str | None = field(None, "split whose units make dict.src.txt (null: the "
                                               "first of `splits`)")
    chunk_seconds: float = real(81.25, 1.0, 36000.0, "longer files are quantized in chunks of "
                                                     "this length (fairseq --max-size 1.3M "
                                                     "samples)")
    device: Device = field("auto", "where to run the model")


class ExportUnitsStage(Stage):
    """Write the discrete units of every utterance of the chosen splits (fairseq .src format)."""

    Config = ExportUnitsConfig

    def run(self, context) -> None:
        from w2v import load_pretrained

        cfg = self.config
        manifests = stage_manifests(cfg.splits, cfg.manifests, context.sections.data,
                                    context.stage_id)
        source = source_dir(cfg.from_, context, "from")
        model = load_pretrained(source)
        from .units import export_units

        meta = export_units(model, manifests, context.stage_dir,
                            dictionary_split=cfg.dictionary_split, chunk_seconds=cfg.chunk_seconds,
                            device=_device(cfg.device), source=str(source))
        log.info("stage `%s`: %d distinct units in dict.src.txt", context.stage_id,
                 meta["dictionary_size"])


# ------------------------------------------------------------------ featurize_units
@attrs.define(kw_only=True)
class FeaturizeUnitsConfig:
    from_: str = field("bert", "the stage (or model path) of the unit model")
    units: str = field("export_units", "the export_units stage (or a directory of .src files)")
    splits: list[str] | None = field(None, "units files to featurize (null: every .src)")
    layer: int | None = size(None, 0, 1024, "a context block's output (0-based); null: the "
                                            "final output (the paper's choice)")
    chunk_units: int = size(4096, 2, 1 << 20, "longer sequences are featurized in chunks")
    device: Device = field("auto", "where to run the model")


@torch.inference_mode()
def unit_features(model, ids: torch.Tensor, *, layer: int | None, chunk: int) -> torch.Tensor:
    """Features ``[T, D]`` of one unit sequence ``ids`` ``[T]``."""
    pieces = []
    for start in range(0, ids.shape[0], chunk):
        feats = model.extract_features(ids[None, start:start + chunk], None, layers=layer)
        pieces.append(feats.layers[layer][0] if layer is not None else feats.output[0])
    if not pieces:
        return torch.zeros(0, model.context_signal().dim)
    return torch.cat(pieces)


class FeaturizeUnitsStage(Stage):
    """Features of a trained unit model (BERT) for every exported split, in fp16 shards."""

    Config = FeaturizeUnitsConfig

    def run(self, context) -> None:
        from w2v import load_pretrained
        from w2v.data.manifest import read_manifest
        from w2v.plugins.data.shards import ShardWriter, write_meta

        from .units import read_lines

        cfg = self.config
        device = _device(cfg.device)
        model = load_pretrained(source_dir(cfg.from_, context, "from")).to(device).eval()
        dictionary = getattr(model, "dictionary", None)
        if dictionary is None:
            raise ConfigError("the model carries no unit dictionary (was it trained by a "
                              "`train` stage over `data: {name: units}`?).",
                              key=f"stages.{context.stage_id}.from")
        units = source_dir(cfg.units, context, "units")
        splits = cfg.splits or sorted(p.stem for p in units.glob("*.src"))
        out = Path(context.stage_dir)
        counts = {}
        dim = model.context_signal().dim
        for split in splits:
            shard = ShardWriter(out, split, dim=dim)
            for line in read_lines(units / f"{split}.src"):
                ids = torch.tensor(dictionary.encode(line.split()), dtype=torch.long,
                                   device=device)
                shard.add(unit_features(model, ids, layer=cfg.layer, chunk=cfg.chunk_units))
            tsv = units / f"{split}.tsv"
            if tsv.exists():
                manifest = read_manifest(str(tsv))
                counts[split] = shard.finish(manifest.root, manifest.entries())
            else:
                counts[split] = shard.finish()
            log.info("features of `%s`: %d utterances, %d frames", split,
                     counts[split]["utterances"], counts[split]["frames"])
        local = model.local_signal()
        meta = {"dim": dim, "stride": int(local.stride),
                "sample_rate": int(local.sample_rate), "feature": "output", "layer": cfg.layer,
                "source": str(source_dir(cfg.from_, context, "from")), "splits": counts}
        write_meta(out, meta)
