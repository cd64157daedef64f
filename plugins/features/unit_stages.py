"""The unit stages of the vq-wav2vec + BERT pipeline: ``export_units`` and ``featurize_units``
(any quantized model's units; any unit model's features).

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

import logging
from pathlib import Path

import attrs
import torch

from w2v.config import field, real, size
from w2v.errors import ConfigError
from w2v.interfaces import Stage
from w2v.plugins.stages.inputs import Device, run_device, source_dir, stage_manifests

log = logging.getLogger("w2v")


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
                            device=run_device(cfg.device), source=str(source))
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
        device = run_device(cfg.device)
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
