"""The ``featurize_audio`` stage: an audio model's features per split, in feature shards.

An audio model's features for the chosen splits of ``data:`` (and any extra
manifests), written with :class:`w2v.plugins.data.shards.ShardWriter`
(``<name>_0_1.npy`` fp16 ``[frames, D]``, ``.len``, ``.tsv``, ``.done``) plus
``features.json``, which records each split's manifest. The model is an earlier
stage's (``from: pretrain``: wav2vec ``c``, vq-wav2vec code vectors with
``feature: quantized``, ...) or, with ``from: null``, the stage's own ``model:``
built untrained: a log-mel front end (the papers' baseline) or a randomly
initialised network (a control). A downstream model trains on them with a
``train`` stage over ``data: {name: features, path: <this stage>, ...}``, and an
``evaluate`` stage over the same source decodes its test split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import attrs
import torch

from w2v.config import field, real, size
from w2v.errors import ConfigError
from w2v.interfaces import Stage
from w2v.plugins.data.shards import ShardWriter, write_meta
from w2v.plugins.stages.inputs import Device, run_device, source_dir, stage_manifests

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
    """Featurize every row of a manifest into ``<name>_0_1.*``; returns ``{utterances, frames,
    manifest}``."""
    from w2v.data.manifest import read_manifest

    from .units import manifest_waves

    manifest = read_manifest(manifest_path)
    shard = ShardWriter(out_dir, name, dim=feature_dim(model, feature))
    for wave in manifest_waves(manifest, model.sample_rate):
        shard.add(audio_features(model, wave.to(device), feature=feature, layer=layer,
                                 chunk=chunk))
    counts = shard.finish(manifest.root, manifest.entries())
    return {**counts, "manifest": str(manifest_path)}


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
        manifests = stage_manifests(cfg.splits, cfg.manifests, data, sid, context)
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
        device = run_device(cfg.device)
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
        write_meta(out, meta)
