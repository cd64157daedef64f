"""Downstream models on frozen features: ``featurize_audio`` and ``train_features`` stages.

* ``featurize_audio``: an audio model's features for the chosen splits of
  ``data:`` (and any extra manifests), in ``w2vrun featurize``'s layout
  (``<name>_0_1.npy`` fp16 ``[frames, D]``, ``.len``, ``.tsv``, ``.done``) plus
  ``features.json``. The model is an earlier stage's (``from: pretrain``: wav2vec
  ``c``, vq-wav2vec code vectors with ``feature: quantized``, ...) or, with
  ``from: null``, the stage's own ``model:`` built untrained: a log-mel front end
  (the papers' baseline) or a randomly initialised network (a control).
* ``train_features``: trains the stage's model (``model.encoder: {name:
  precomputed}`` + e.g. a BiLSTM CTC head) on a featurize output (this
  module's, ``featurize_units``' BERT features, or ``w2vrun featurize``'s) with
  the labels of ``data:``'s manifests, which must list the same rows as the
  features. After training it greedy-decodes ``data.test`` and writes
  ``results.json`` in the ``evaluate`` stage's format, so a ``report`` stage can
  tabulate it (``evaluations: [ctc, ctc_logmel]``).
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
from w2v.plugins.stages.train import require_objective

from .feature_data import META_FILE
from .unit_stages import SPLITS, Device, _device, source_dir, stage_manifests

log = logging.getLogger("w2v")

FeatureKind = Literal["output", "local", "quantized"]


# ------------------------------------------------------------------ featurize_audio
@attrs.define(kw_only=True)
class FeaturizeAudioConfig:
    from_: str | None = field(None, "the stage (or checkpoint path) whose model makes the "
                                    "features; null: the stage's own `model:` section, built "
                                    "untrained (a log-mel front end, or a random-init control)")
    splits: list[str] | None = field(None, "splits of `data:` to featurize (null: every split "
                                           "set there)")
    manifests: dict[str, str] = field({}, "more manifests to featurize, `name: path` (or "
                                          "`CORPUS:SPLIT`)")
    feature: FeatureKind = field("output", "`output`: the context network's final output "
                                           "(wav2vec c; the encoder output when there is none); "
                                           "`local`: the encoder output (z); `quantized`: the "
                                           "quantizer's code vectors (vq-wav2vec units, embedded)")
    layer: int | None = size(None, 0, 1024, "a context block's output (0-based) instead of "
                                            "the final output")
    seed: int = size(1, 0, (1 << 31) - 1, "initialisation seed of an untrained model "
                                          "(`from: null`)")
    chunk_seconds: float = real(30.0, 1.0, 36000.0, "longer files are featurized in chunks of "
                                                    "this length")
    device: Device = field("auto", "where to run the model")


@torch.inference_mode()
def audio_features(model, wave: torch.Tensor, *, feature: str = "output", layer: int | None = None,
                   chunk: int) -> torch.Tensor:
    """Features ``[T, D]`` of one utterance ``wave`` ``[S]``, in chunks of ``chunk`` samples
    (a tail shorter than the encoder's receptive field adds no frame)."""
    rf = model.encoder.produces().receptive_field
    pieces = []
    for start in range(0, max(int(wave.shape[0]), 1), chunk):
        piece = wave[start:start + chunk][None]
        if piece.shape[1] < rf:
            continue
        if feature == "local":
            out = model.encode(piece).features
        elif feature == "quantized":
            enc = model.encode(piece)
            out = model.quantizer(enc.features, enc.lengths).vectors
        else:
            feats = model.extract_features(piece, layers=layer)
            out = feats.layers[layer] if layer is not None else feats.output
        pieces.append(out[0].float())
    if not pieces:
        return torch.zeros(0, feature_dim(model, feature))
    return torch.cat(pieces)


def feature_dim(model, feature: str) -> int:
    if feature == "local":
        return model.local_signal().dim
    if feature == "quantized":
        return model.quantizer.produces().dim
    return model.context_signal().dim


def check_feature(model, feature: str, layer: int | None, key: str) -> None:
    """ConfigError when ``model`` cannot give ``feature`` / ``layer``."""
    if feature == "quantized" and model.quantizer is None:
        raise ConfigError("`feature: quantized` needs a model with a quantizer.", key=key,
                          hint="Featurize a vq-wav2vec model, or use `output` / `local`.")
    if layer is not None:
        if feature != "output":
            raise ConfigError(f"`layer` selects a context block; it does not combine with "
                              f"`feature: {feature}`.", key=key)
        blocks = model.aggregator.num_layers if model.aggregator is not None else 0
        if layer >= blocks:
            raise ConfigError(f"`layer: {layer}` asked for, but the model has {blocks} context "
                              f"blocks (0..{blocks - 1}).", key=key)


def write_features(model, manifest_path: str, out_dir: Path, name: str, *, feature: str,
                   layer: int | None, chunk: int, device: str) -> dict:
    """Featurize every row of a manifest into ``<name>_0_1.*``; returns ``{utterances, frames}``."""
    from w2v.data.manifest import read_manifest, write_manifest

    from .units import manifest_waves

    manifest = read_manifest(manifest_path)
    feats, lengths = [], []
    for wave in manifest_waves(manifest, model.sample_rate):
        f = audio_features(model, wave.to(device), feature=feature, layer=layer, chunk=chunk)
        feats.append(f.to(torch.float16).cpu().numpy())
        lengths.append(int(f.shape[0]))
    stem = out_dir / f"{name}_0_1"
    dim = feature_dim(model, feature)
    np.save(stem.with_suffix(".npy"),
            np.concatenate(feats) if feats else np.zeros((0, dim), np.float16))
    stem.with_suffix(".len").write_text("".join(f"{n}\n" for n in lengths))
    write_manifest(str(stem.with_suffix(".tsv")), manifest.root, manifest.entries())
    stem.with_suffix(".done").write_text(f"{len(lengths)} utterances, {sum(lengths)} frames\n")
    return {"utterances": len(lengths), "frames": int(sum(lengths))}


class FeaturizeAudioStage(Stage):
    """An audio model's features of the chosen splits, in ``w2vrun featurize``'s layout."""

    Config = FeaturizeAudioConfig

    def run(self, context) -> None:
        from w2v import load_pretrained
        from w2v.build import build_model
        from w2v.checkpoint_formats import MODEL_FILE, save_model
        cfg = self.config
        sid = context.stage_id
        data = context.sections.data
        manifests = stage_manifests(cfg.splits, cfg.manifests, data, sid)
        out = Path(context.stage_dir)
        if cfg.from_ is None:
            if context.sections.model.encoder is None:
                raise ConfigError("`from: null` builds the stage's own `model:`, but it has no "
                                  "encoder.", key=f"stages.{sid}.model.encoder")
            torch.manual_seed(cfg.seed)
            model = build_model(context.sections.model, data.sample_rate).eval()
            source = f"untrained `model:` of stage {sid} (seed {cfg.seed})"
            save_model(model, context.sections.model, out / MODEL_FILE,
                       extra={"stage": sid, "updates": 0})
        else:
            path = source_dir(cfg.from_, context, "from")
            model = load_pretrained(path)
            source = str(path)
        check_feature(model, cfg.feature, cfg.layer, f"stages.{sid}.feature")
        device = _device(cfg.device)
        model = model.to(device).eval()
        chunk = max(int(cfg.chunk_seconds * model.sample_rate),
                    model.encoder.produces().receptive_field)
        splits = {}
        for name, path in manifests.items():
            splits[name] = write_features(model, path, out, name, feature=cfg.feature,
                                          layer=cfg.layer, chunk=chunk, device=device)
            log.info("features of `%s`: %d utterances, %d frames", name,
                     splits[name]["utterances"], splits[name]["frames"])
        local = model.local_signal()
        meta = {"dim": feature_dim(model, cfg.feature), "stride": int(local.stride),
                "sample_rate": int(model.sample_rate), "feature": cfg.feature, "layer": cfg.layer,
                "source": source, "splits": splits}
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


# ------------------------------------------------------------------ train_features
@attrs.define(kw_only=True)
class TrainFeaturesConfig:
    features: str = field("featurize", "the featurize stage (featurize_audio, featurize_units) "
                                       "or a directory `w2vrun featurize` wrote")
    splits: dict[str, str] = field({}, "which features split belongs to each data split, e.g. "
                                       "`{train: labeled, valid: labeled_valid}` (default: the "
                                       "same name)")
    max_tokens: int = size(40000, 1, 1 << 30, "feature frames per batch (max length x batch "
                                              "size)")
    max_frames: int | None = size(None, 1, 1 << 30, "training utterances with more frames are "
                                                    "left out (null: none)")
    seed: int = size(1, 0, (1 << 31) - 1, "seed of the batch order")
    init: InitConfig | None = field(None, "start from an earlier stage or checkpoint")
    valid: bool = field(True, "validate on `data.valid` when it is set")
    test: bool = field(True, "after training, greedy-decode `data.test` (when set) and write "
                             "results.json (the evaluate stage's format)")
    save_model: bool = field(True, "write the trained model to `<stage dir>/model.pt`")


class TrainFeaturesStage(Stage):
    """Train a downstream model (CTC) on frozen features with the labels of ``data:``."""

    Config = TrainFeaturesConfig

    def run(self, context) -> None:
        from w2v.build import build_model, build_objective, count_parameters
        from w2v.checkpoint_formats import MODEL_FILE, save_model
        from w2v.data.loader import resolve_manifest
        from w2v.plugins.stages.handover import initialise
        from w2v.plugins.stages.train import load_stage_dictionary
        from w2v.train.distributed import detect
        from w2v.train.trainer import Trainer

        from .feature_data import build_feature_loader, labelled_features, load_features
        from .feature_input import sized_feature_model_config

        cfg = self.config
        sid = context.stage_id
        sec = context.sections
        data = sec.data
        if data.labels is None:
            raise ConfigError(f"stage `{sid}` trains on labelled features, but `data.labels` is "
                              "null.", key=f"stages.{sid}.data.labels",
                              hint="Set `data.labels: ltr` (letters beside the manifests).")
        require_objective(context, "Add `objective: {name: ctc, apply_mask: false}`.")
        for split in cfg.splits:
            if split not in SPLITS:
                raise ConfigError(f"unknown data split `{split}`.", key=f"stages.{sid}.splits",
                                  hint=did_you_mean(split, list(SPLITS)))
        features_dir = source_dir(cfg.features, context, "features")
        dictionary = load_stage_dictionary(data)

        def dataset(split: str, max_frames=None):
            name = cfg.splits.get(split, split)
            return labelled_features(load_features(features_dir, name),
                                     resolve_manifest(data, split), data.labels, dictionary,
                                     bad_input=data.bad_input, max_frames=max_frames,
                                     what=f"features `{name}` for data.{split}")

        train_set = dataset("train", cfg.max_frames)
        meta = train_set.features.meta
        frame_stride = int(meta.get("stride") or 0) or None
        model_cfg = sized_feature_model_config(sec.model, train_set.features.dim, frame_stride)
        model = build_model(model_cfg, int(meta.get("sample_rate", data.sample_rate)),
                            dictionary=dictionary)
        initialise(model, cfg.init, context)
        objective = build_objective(sec.objective, model, dictionary=dictionary)
        log.info("stage `%s`: %d training utterances (%d left out), features %d wide, model %s "
                 "parameters", sid, len(train_set), len(train_set.skipped),
                 train_set.features.dim, f"{count_parameters(model):,}")
        dist = detect()
        pad = dictionary.pad

        def train_data(epoch, sampler_state):
            loader, sampler = build_feature_loader(train_set, pad_id=pad,
                                                   max_tokens=cfg.max_tokens, train=True,
                                                   seed=cfg.seed, rank=dist.rank,
                                                   world_size=dist.world_size, epoch=epoch)
            if sampler_state is not None:
                sampler.load_state_dict(sampler_state)
            return loader, sampler

        valid_data = None
        if cfg.valid and data.valid is not None:
            valid_set = dataset("valid")

            def valid_data():
                return build_feature_loader(valid_set, pad_id=pad,
                                            max_tokens=max(cfg.max_tokens,
                                                           int(valid_set.sizes.max())),
                                            train=False, rank=dist.rank,
                                            world_size=dist.world_size)[0]

        frame_rate = model.local_signal().frame_rate
        trainer_cfg = attrs.evolve(sec.trainer, resume=sec.trainer.resume and context.resume)
        trainer = Trainer(trainer_cfg, model, objective, train_data, run_dir=context.run_dir,
                          valid_data=valid_data, stage=sid,
                          checkpoint_dir=context.checkpoint_dir, metrics_path=context.metrics_path,
                          max_tokens=cfg.max_tokens, sample_rate=max(1, round(frame_rate)))
        started = time.time()
        summary = trainer.fit()
        if dist.rank != 0:
            return
        stage_dir = Path(context.stage_dir)
        info = {"updates": summary.updates, "stop_reason": summary.stop_reason,
                "best_metric": summary.best_metric, "best_value": summary.best_value,
                "parameters": count_parameters(model),
                "features": str(features_dir), "feature_dim": train_set.features.dim,
                "seconds": round(time.time() - started, 1)}
        (stage_dir / "summary.json").write_text(json.dumps(info, indent=2) + "\n")
        if cfg.save_model:
            save_model(model, model_cfg, stage_dir / MODEL_FILE, dictionary=dictionary,
                       extra={"stage": sid, "updates": summary.updates})
        if cfg.test and data.test is not None:
            model = model.to("cpu").eval()
            result = decode_and_score(model, dataset("test"), dictionary, sid, stage_dir)
            (stage_dir / "results.json").write_text(
                json.dumps({"split": "test", "results": [result]}, indent=2) + "\n")
            log.info("stage `%s`: test CER %.1f%%  WER %.1f%% (greedy)", sid,
                     100 * result["cer"], 100 * result["wer"])


@torch.inference_mode()
def decode_and_score(model, dataset, dictionary, name: str, out_dir: Path) -> dict:
    """Greedy-decode every utterance of ``dataset`` (one at a time, all rows, none left out
    for length) and score CER/WER; writes ``<name>.greedy.tsv`` per utterance."""
    from w2v.plugins.ctc.decoders import greedy_tokens
    from w2v.plugins.ctc.head import force_blank
    from w2v.plugins.ctc.metrics import check_not_degenerate
    from w2v.plugins.stages.evaluate import score_hypotheses

    features = dataset.features
    refs, hyps = [], []
    for row in range(len(features)):
        target = dataset.target(row)
        refs.append(dictionary.words(target.tolist()))
        frames = torch.from_numpy(np.asarray(features.frames(row), dtype=np.float32))
        if frames.shape[0] == 0:
            hyps.append("")
            continue
        feats = model.extract_features(frames[None])
        logits = force_blank(model.head(feats.output, feats.lengths), feats.lengths,
                             dictionary.blank)
        tokens, _ = greedy_tokens(logits.float(), None, dictionary.blank)
        hyps.append(dictionary.words(tokens[0]))
    row = {"model": name, "decoder": "greedy",
           **score_hypotheses(refs, hyps, out_dir / f"{name}.greedy.tsv")}
    warning = check_not_degenerate(hyps)
    if warning:
        row["warning"] = warning
        log.warning("stage `%s`: %s", name, warning)
    return row
