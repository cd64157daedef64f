"""The ``train_gan`` stage: the wav2vec-U generator against unpaired phonemised text.

A ``train`` stage whose data reads two sources side by side: the segment
features (``data: {name: features, ...}``) and, under ``data.sources.text``, the
phonemised text (``{name: units, ext: phn, path: prepare_text}``). Each feature
batch of B utterances gets B sentences drawn at random from the text (fairseq's
``RandomInputDataset``; the draw is a function of the batch's utterance ids and the
seed, so a resumed run sees the same pairs). The phone dictionary sizes the
generator head and travels with the saved model. With ``sweep:`` the stage trains one
sub-run per configuration of a hyperparameter grid (:mod:`.sweep`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator

import attrs
import torch
from torch.nn.utils.rnn import pad_sequence

from w2v.config import field, size

from w2v.interfaces import Batch
from w2v.plugins.stages.train import TrainStage

from .sweep import SWEEP_FILE, check_grid, expand, write_sweep

log = logging.getLogger("w2v")


class WithUnpairedText:
    """Batches of ``loader`` with ``extra["text"]`` ``[B, L]`` (padded with ``pad_id``) and
    ``extra["text_lengths"]`` ``[B]``: B random sentences of ``text`` (a unit dataset); with
    ``targets`` (one id row per utterance, by ``batch.ids``) also ``extra["aux_targets"]``
    ``[B, T]`` padded with -1."""

    def __init__(self, loader: Iterable[Batch], text, *, pad_id: int, seed: int,
                 targets: list[torch.Tensor] | None = None) -> None:
        self.loader, self.text, self.pad_id, self.seed = loader, text, pad_id, seed
        self.targets = targets

    @property
    def skipped(self):
        return list(getattr(self.loader, "skipped", [])) + list(getattr(self.text, "skipped", []))

    def __len__(self) -> int:
        return len(self.loader)

    def _generator(self, batch: Batch) -> torch.Generator:
        ids = batch.ids.tolist() if batch.ids is not None else []
        digest = hashlib.sha256(f"{self.seed}:{ids}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            g = self._generator(batch)
            picks = torch.randint(len(self.text), (batch.size,), generator=g).tolist()
            seqs = [self.text[i]["tokens"] for i in picks]
            batch.extra["text"] = pad_sequence(seqs, batch_first=True, padding_value=self.pad_id)
            batch.extra["text_lengths"] = torch.tensor([len(s) for s in seqs], dtype=torch.long)
            if self.targets is not None:
                batch.extra["aux_targets"] = pad_sequence(
                    [self.targets[i] for i in batch.ids.tolist()], batch_first=True,
                    padding_value=-1)
            yield batch


class TrainGanStage(TrainStage):
    """Train a wav2vec-U generator (model head) with the ``wav2vec_u`` objective."""

    @attrs.define(kw_only=True)
    class Config(TrainStage.Config):
        valid: bool = field(False, "validate on `data.valid` (a GAN's loss says little: the "
                                   "`select_gan` stage chooses the checkpoint)")
        aux_targets: str | None = field(None, "the kmeans_targets stage (or a directory of "
                                              "`train.km`) for wav2vec-U 2.0's auxiliary loss")
        sweep: dict[str, list[Any]] | None = field(
            None, "a hyperparameter grid, e.g. `{code_penalty: [2, 4], seed: [0, 1]}`: keys are "
                  "objective settings, plus `seed` (trainer and data seed); one sub-run per "
                  "point of the cross product, in `<stage dir>/<key=value__...>/`, and "
                  "`select_gan` chooses across all of them; null: one run")
        max_configs: int = size(64, 1, 1 << 16, "the most sub-runs a `sweep` may make")

    def check(self, stage_id, sections, stage_ids) -> None:
        """The sweep's keys are objective settings (or ``seed``) and its size is bounded."""
        check_grid(self.config.sweep, sections.objective, self.config.max_configs)

    def run(self, context) -> None:
        """One training run, or with ``sweep`` one per configuration, in order; a
        configuration that finished (``<stage dir>/<name>/DONE``) is skipped on a resumed
        run."""
        from w2v.checkpoint_formats import MODEL_FILE
        from w2v.stages import DONE
        from w2v.train.distributed import detect
        from w2v.train.rng import seed_initialisation

        main = detect().rank == 0
        stage_dir = Path(context.stage_dir)
        configurations = expand(self.config.sweep)
        if main:   # what an earlier run of the other kind left would mislead select_gan
            for name in ((MODEL_FILE, "summary.json") if configurations else (SWEEP_FILE,)):
                (stage_dir / name).unlink(missing_ok=True)
        if not configurations:
            return super().run(context)
        resume = context.resume and context.sections.trainer.resume
        for i, conf in enumerate(configurations, 1):
            sub = attrs.evolve(context, stage_id=f"{context.stage_id}/{conf.name}",
                               stage_dir=stage_dir / conf.name,
                               sections=conf.apply(context.sections))
            marker = Path(sub.stage_dir) / DONE
            if resume and marker.exists():
                log.info("stage `%s`: configuration %d/%d `%s` already done; skipping",
                         context.stage_id, i, len(configurations), conf.name)
                continue
            log.info("stage `%s`: configuration %d/%d `%s`", context.stage_id, i,
                     len(configurations), conf.name)
            if main:
                marker.unlink(missing_ok=True)
                Path(sub.stage_dir).mkdir(parents=True, exist_ok=True)
            seed_initialisation(sub.sections.trainer.seed)
            super().run(sub)
            if main:
                marker.write_text(json.dumps({"configuration": conf.name,
                                              "values": conf.values}) + "\n")
        if main:
            write_sweep(stage_dir, configurations)

    def _text(self, data, context):
        from w2v.data.sources import open_source

        return open_source(data, "text", context=context)

    def dictionary(self, source, data, context):
        return self._text(data, context).dictionary()

    def batches(self, loader, data, context):
        text = self._text(data, context)
        targets = None
        if self.config.aux_targets is not None:
            from w2v.plugins.stages.inputs import source_dir

            from .prepare import read_targets

            targets = read_targets(source_dir(self.config.aux_targets, context, "aux_targets")
                                   / "train.km")
        return WithUnpairedText(loader, text.dataset("train"), pad_id=text.dictionary().pad,
                                seed=getattr(data, "seed", 1), targets=targets)
