"""The training stages: ``train`` (any objective, any data source), ``pretrain`` and ``finetune``.

All three are the same loop over the stage's ``data``, ``model``, ``objective``
and ``trainer`` sections; they differ only in their defaults (``finetune``
starts from an earlier stage's encoder, context network and masker). The data
source (``data: {name: ...}``, :mod:`w2v.data.sources`) gives the batches and
sizes the model's input: waveforms (fairseq, kaldi, lhotse, hf_dataset), feature
shards (``features``: a downstream model on frozen features) or unit tokens
(``units``: BERT on vq-wav2vec units).
The trained model is written to ``<stage dir>/model.pt`` for later stages,
``w2v.load_pretrained`` and ``w2vrun transcribe``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import attrs

from w2v.build import build_model, build_objective, count_parameters
from w2v.checkpoint_formats import MODEL_FILE, save_model
from w2v.config import field
from w2v.interfaces import Stage

from .handover import InitConfig, initialise

log = logging.getLogger("w2v")


def load_stage_dictionary(data):
    """The dictionary of a stage's data source (labels, or a token source's vocabulary), or
    None for unlabelled data."""
    from w2v.data.sources import open_source

    return open_source(data).dictionary()


def require_objective(context, hint: str) -> None:
    """Stop with a config error when a training stage has no ``objective:``."""
    if context.sections.objective is None:
        from w2v.errors import ConfigError
        raise ConfigError(f"stage `{context.stage_id}` trains, but no `objective:` is set.",
                          key=f"stages.{context.stage_id}.objective", hint=hint)


class TrainStage(Stage):
    """Train the stage's model with its objective (pretraining, fine-tuning, probes)."""

    @attrs.define(kw_only=True)
    class Config:
        init: InitConfig | None = field(None, "start from an earlier stage or a checkpoint: "
                                              "`{from: pretrain, components: [encoder, aggregator]}`")
        valid: bool = field(True, "validate on `data.valid` when it is set")
        save_model: bool = field(True, "write the trained model to `<stage dir>/model.pt`")

    def inputs(self, sections) -> dict[str, str | None]:
        """The training split (required) and the validation split when it is set."""
        return sections.data.inputs(("train",), ("valid",) if self.config.valid else ())

    def dictionary(self, source, data, context):
        """The dictionary that sizes the model's head and the objective: the source's labels
        (or a token source's vocabulary) by default."""
        return source.dictionary()

    def batches(self, loader, data, context):
        """The batches the trainer sees for ``loader`` (a stage reading a second source side
        by side attaches it here); the loader itself by default."""
        return loader

    def run(self, context) -> None:
        from w2v.data.sources import open_source, sized_for_source
        from w2v.train.distributed import detect
        from w2v.train.trainer import Trainer

        sec = context.sections
        data = sec.data
        require_objective(context, "Add `objective: {name: ...}` (see `w2vrun list objective`).")
        source = open_source(data, context=context)
        dictionary = self.dictionary(source, data, context)
        signal = source.signal()
        model_cfg = sized_for_source(sec.model, signal)
        model = build_model(model_cfg, signal.sample_rate, dictionary=dictionary)
        initialise(model, self.config.init, context)
        objective = build_objective(sec.objective, model, dictionary=dictionary)
        log.info("stage `%s`: %s data (%s), model %s parameters, objective %s", context.stage_id,
                 data.name, signal.describe(), f"{count_parameters(model):,}",
                 f"{count_parameters(objective):,}")

        dist = detect()
        min_samples = model.encoder.produces().receptive_field if signal.kind == "waveform" else 0

        loaders = []  # every loader this stage made, for the skipped-input report

        def train_data(epoch, sampler_state):
            loader, sampler = source.loader("train", rank=dist.rank, world_size=dist.world_size,
                                            epoch=epoch, train=True, min_samples=min_samples,
                                            dictionary=dictionary)
            if sampler_state is not None:
                sampler.load_state_dict(sampler_state)
            loaders.append(loader)
            return self.batches(loader, data, context), sampler

        valid_data = None
        if self.config.valid and source.has_split("valid"):
            def valid_data():
                loader, _ = source.loader("valid", rank=dist.rank, world_size=dist.world_size,
                                          train=False, min_samples=min_samples,
                                          dictionary=dictionary)
                loaders.append(loader)
                return self.batches(loader, data, context)

        # batch budgets in the source's own steps (samples, frames or tokens) per second
        rate = signal.sample_rate if signal.kind == "waveform" else max(1, round(signal.frame_rate))
        trainer_cfg = attrs.evolve(sec.trainer, resume=sec.trainer.resume and context.resume)
        trainer = Trainer(trainer_cfg, model, objective, train_data, run_dir=context.run_dir,
                          valid_data=valid_data, stage=context.stage_id,
                          checkpoint_dir=context.checkpoint_dir, metrics_path=context.metrics_path,
                          max_tokens=data.max_tokens, sample_rate=rate)
        started = time.time()
        try:
            summary = trainer.fit()
        finally:
            if dist.rank == 0:
                report_skips(loaders, Path(context.stage_dir), context.stage_id)
        log.info("stage `%s`: %d updates (%s)", context.stage_id, summary.updates,
                 summary.stop_reason)
        if dist.rank == 0:
            write_summary(Path(context.stage_dir), model, objective, sec.trainer, summary,
                          time.time() - started, data={"source": data.name, "kind": signal.kind,
                                                       "dim": signal.dim})
        if self.config.save_model and dist.rank == 0:
            path = Path(context.stage_dir) / MODEL_FILE
            save_model(model, model_cfg, path,
                       dictionary=dictionary,
                       extra={"stage": context.stage_id, "updates": summary.updates})
            log.info("stage `%s`: model written to %s", context.stage_id, path)


def report_skips(loaders, stage_dir: Path, stage_id: str) -> None:
    """``<stage dir>/skipped.tsv`` and one log line, when the data policy `skip` left inputs out."""
    from w2v.data.dataset import write_skip_report

    skips = [rec for loader in loaders for rec in loader.skipped]
    if skips:
        log.warning("stage `%s`: %s", stage_id, write_skip_report(skips, str(stage_dir)))


def trainable_parameters(model, objective, trainer_config) -> int:
    """Parameters the stage trained: everything except what `trainer.freeze` froze throughout."""
    frozen = set()
    for name in trainer_config.freeze:
        root = objective if name.startswith("objective") else model
        path = name.split(".", 1)[1] if name.startswith("objective.") else \
            ("" if name == "objective" else name)
        frozen |= {id(p) for p in (root.get_submodule(path) if path else root).parameters()}
    params = list(model.parameters()) + list(objective.parameters())
    return sum(p.numel() for p in params if id(p) not in frozen)


def write_summary(stage_dir: Path, model, objective, trainer_config, summary, seconds: float,
                  data: dict | None = None):
    """``summary.json``: sizes, updates, time, the best validation value of the stage and
    (``data``) what the data source gave."""
    info = {
        "parameters": count_parameters(model) + count_parameters(objective),
        "trainable_parameters": trainable_parameters(model, objective, trainer_config),
        "updates": summary.updates, "stop_reason": summary.stop_reason,
        "best_metric": summary.best_metric, "best_value": summary.best_value,
        "seconds": round(seconds, 1),
    }
    if data is not None:
        info["data"] = data
    (stage_dir / "summary.json").write_text(json.dumps(info, indent=2) + "\n")


class PretrainStage(TrainStage):
    """Self-supervised pretraining (the `train` stage under its paper name)."""


class FinetuneStage(TrainStage):
    """Fine-tuning (the `train` stage under its paper name; pair it with `init:`)."""
