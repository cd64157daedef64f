"""The ``train_gan`` stage: the wav2vec-U generator against unpaired phonemised text.

A ``train`` stage whose data reads two sources side by side: the segment
features (``data: {name: features, ...}``) and, under ``data.sources.text``, the
phonemised text (``{name: units, ext: phn, path: prepare_text}``). Each feature
batch of B utterances gets B sentences drawn at random from the text (fairseq's
``RandomInputDataset``; the draw is a function of the batch's utterance ids and the
seed, so a resumed run sees the same pairs). The phone dictionary sizes the
generator head and travels with the saved model.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Iterator

import attrs
import torch
from torch.nn.utils.rnn import pad_sequence

from w2v.config import field

from w2v.interfaces import Batch
from w2v.plugins.stages.train import TrainStage


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
