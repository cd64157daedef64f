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

import torch
from torch.nn.utils.rnn import pad_sequence

from w2v.interfaces import Batch
from w2v.plugins.stages.train import TrainStage


class WithUnpairedText:
    """Batches of ``loader`` with ``extra["text"]`` ``[B, L]`` (padded with ``pad_id``) and
    ``extra["text_lengths"]`` ``[B]``: B random sentences of ``text`` (a unit dataset)."""

    def __init__(self, loader: Iterable[Batch], text, *, pad_id: int, seed: int) -> None:
        self.loader, self.text, self.pad_id, self.seed = loader, text, pad_id, seed

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
            yield batch


class TrainGanStage(TrainStage):
    """Train a wav2vec-U generator (model head) with the ``wav2vec_u`` objective."""

    def _text(self, data, context):
        from w2v.data.sources import open_source

        return open_source(data, "text", context=context)

    def dictionary(self, source, data, context):
        return self._text(data, context).dictionary()

    def batches(self, loader, data, context):
        text = self._text(data, context)
        return WithUnpairedText(loader, text.dataset("train"), pad_id=text.dictionary().pad,
                                seed=getattr(data, "seed", 1))
