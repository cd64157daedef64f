"""The vq-wav2vec + BERT pipeline stages: ``export_units``, ``train_units``, ``featurize_units``.

* ``export_units``: the discrete units of an earlier stage's model (``from:
  pretrain``) for the chosen splits of ``data:`` (and any extra manifests):
  ``<split>.src``, ``<split>.tsv``, ``dict.src.txt``, ``units.json``
  (:mod:`.units`).
* ``train_units``: trains the stage's model (``model.encoder: {name:
  unit_embedding}`` + a context network) with its objective (``bert``) on
  the exported units; the unit dictionary sizes the embedding. The model is
  written to ``<stage dir>/model.pt``.
* ``featurize_units``: the trained model's features of every exported split,
  as ``w2vrun featurize`` writes them (``<split>_0_1.npy`` fp16 ``[frames, D]``,
  ``.len``, ``.tsv``, plus ``features.json``), ready for a ``train_features``
  stage (a CTC model on BERT features).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch

from w2v.config import field, real, size
from w2v.errors import ConfigError, did_you_mean
from w2v.interfaces import Stage
from w2v.plugins.stages.handover import InitConfig

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


# ------------------------------------------------------------------ train_units
@attrs.define(kw_only=True)
class TrainUnitsConfig:
    units: str = field("export_units", "the export_units stage (or a directory with "
                                       "<split>.src and dict.src.txt)")
    train_split: str = field("train", "units file to train on (`<split>.src`)")
    valid_split: str | None = field("valid", "units file to validate on (null: none; skipped "
                                             "when absent)")
    max_tokens: int = size(8192, 1, 1 << 24, "units per batch (max length x batch size)")
    max_len: int = size(2048, 2, 1 << 20, "longer sequences are cropped to a random window")
    min_len: int = size(2, 1, 1 << 20, "shorter sequences are left out")
    seed: int = size(1, 0, (1 << 31) - 1, "seed of batch order and crops")
    init: InitConfig | None = field(None, "start from an earlier stage or checkpoint: "
                                            "`{from: train_units, components: [encoder, "
                                            "aggregator]}`")
    save_model: bool = field(True, "write the trained model to `<stage dir>/model.pt`")


def sized_unit_model_config(model_cfg, dictionary, meta: dict):
    """``model:`` with the unit embedding sized by the dictionary (and the export's stride)."""
    from .bert import UnitEmbeddingConfig

    enc = model_cfg.encoder
    if enc is None or not isinstance(enc.config, UnitEmbeddingConfig):
        raise ConfigError(f"a `train_units` stage needs `model.encoder: {{name: unit_embedding}}`,"
                          f" found `{enc.name if enc is not None else None}`.",
                          key="model.encoder")
    vocab = len(dictionary)
    if enc.config.vocab_size not in (None, vocab):
        raise ConfigError(f"`vocab_size` is {enc.config.vocab_size}, but the unit dictionary has "
                          f"{vocab} entries.", key="model.encoder.vocab_size",
                          hint="Leave it null: the stage sets it from dict.src.txt.")
    changes = {"vocab_size": vocab}
    if meta.get("stride"):
        changes["frame_stride"] = int(meta["stride"])
    return attrs.evolve(model_cfg, encoder=enc.evolve(**changes))


class TrainUnitsStage(Stage):
    """Train a model over exported units (BERT on vq-wav2vec units) with the stage's objective."""

    Config = TrainUnitsConfig

    def run(self, context) -> None:
        from w2v.build import build_model, build_objective, count_parameters
        from w2v.checkpoint_formats import MODEL_FILE, save_model
        from w2v.plugins.stages.handover import initialise
        from w2v.plugins.stages.train import require_objective
        from w2v.train.distributed import detect
        from w2v.train.trainer import Trainer

        from .unit_data import build_unit_loader, load_unit_dictionary
        from .units import read_meta

        cfg = self.config
        sec = context.sections
        require_objective(context, "Add `objective: {name: bert}`.")
        units = source_dir(cfg.units, context, "units")
        dictionary = load_unit_dictionary(units)
        meta = read_meta(units)
        model_cfg = sized_unit_model_config(sec.model, dictionary, meta)
        model = build_model(model_cfg, int(meta.get("sample_rate", sec.data.sample_rate)))
        initialise(model, cfg.init, context)
        objective = build_objective(sec.objective, model, dictionary=dictionary)
        log.info("stage `%s`: %d units, model %s parameters", context.stage_id, len(dictionary),
                 f"{count_parameters(model):,}")
        dist = detect()
        loader_args = dict(max_tokens=cfg.max_tokens, max_len=cfg.max_len, min_len=cfg.min_len,
                           seed=cfg.seed, rank=dist.rank, world_size=dist.world_size)

        def train_data(epoch, sampler_state):
            loader, sampler = build_unit_loader(units, cfg.train_split, dictionary, train=True,
                                                epoch=epoch, **loader_args)
            if sampler_state is not None:
                sampler.load_state_dict(sampler_state)
            return loader, sampler

        valid_data = None
        if cfg.valid_split and (units / f"{cfg.valid_split}.src").exists():
            def valid_data():
                return build_unit_loader(units, cfg.valid_split, dictionary, train=False,
                                         **loader_args)[0]

        trainer_cfg = attrs.evolve(sec.trainer, resume=sec.trainer.resume and context.resume)
        trainer = Trainer(trainer_cfg, model, objective, train_data, run_dir=context.run_dir,
                          valid_data=valid_data, stage=context.stage_id,
                          checkpoint_dir=context.checkpoint_dir, metrics_path=context.metrics_path)
        started = time.time()
        summary = trainer.fit()
        if dist.rank == 0:
            info = {"updates": summary.updates, "stop_reason": summary.stop_reason,
                    "best_metric": summary.best_metric, "best_value": summary.best_value,
                    "units": len(dictionary), "parameters": count_parameters(model),
                    "seconds": round(time.time() - started, 1)}
            (Path(context.stage_dir) / "summary.json").write_text(json.dumps(info, indent=2) + "\n")
            if cfg.save_model:
                save_model(model, model_cfg, Path(context.stage_dir) / MODEL_FILE,
                           dictionary=dictionary,
                           extra={"stage": context.stage_id, "updates": summary.updates})


# ------------------------------------------------------------------ featurize_units
@attrs.define(kw_only=True)
class FeaturizeUnitsConfig:
    from_: str = field("train_units", "the stage (or model path) of the unit model")
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
        import shutil

        from w2v import load_pretrained

        from .units import read_lines

        cfg = self.config
        device = _device(cfg.device)
        model = load_pretrained(source_dir(cfg.from_, context, "from")).to(device).eval()
        dictionary = getattr(model, "dictionary", None)
        if dictionary is None:
            raise ConfigError("the model carries no unit dictionary (was it trained by a "
                              "`train_units` stage?).", key=f"stages.{context.stage_id}.from")
        units = source_dir(cfg.units, context, "units")
        splits = cfg.splits or sorted(p.stem for p in units.glob("*.src"))
        out = Path(context.stage_dir)
        counts = {}
        for split in splits:
            lines = read_lines(units / f"{split}.src")
            feats, lengths = [], []
            for line in lines:
                ids = torch.tensor(dictionary.encode(line.split()), dtype=torch.long,
                                   device=device)
                f = unit_features(model, ids, layer=cfg.layer, chunk=cfg.chunk_units)
                feats.append(f.to(torch.float16).cpu().numpy())
                lengths.append(f.shape[0])
            stem = out / f"{split}_0_1"
            dim = model.context_signal().dim
            np.save(stem.with_suffix(".npy"),
                    np.concatenate(feats) if feats else np.zeros((0, dim), np.float16))
            stem.with_suffix(".len").write_text("".join(f"{n}\n" for n in lengths))
            if (units / f"{split}.tsv").exists():
                shutil.copyfile(units / f"{split}.tsv", stem.with_suffix(".tsv"))
            stem.with_suffix(".done").write_text(f"{len(lines)} utterances, {sum(lengths)} "
                                                 "frames\n")
            log.info("features of `%s`: %d utterances, %d frames", split, len(lines),
                     sum(lengths))
            counts[split] = {"utterances": len(lines), "frames": int(sum(lengths))}
        from .feature_data import META_FILE

        local = model.local_signal()
        meta = {"dim": model.context_signal().dim, "stride": int(local.stride),
                "sample_rate": int(local.sample_rate), "feature": "output", "layer": cfg.layer,
                "source": str(source_dir(cfg.from_, context, "from")), "splits": counts}
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
