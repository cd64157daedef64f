"""The probes: small trainable models over frozen layer stacks ``[B, T, L, D]``.

Every probe starts with :class:`~w2v.hidden_states.WeightedLayers` (SUPERB's featurizer: a
softmax over one learned weight per layer; optionally each layer layer-normalised first, so
the weights compare usefulness rather than scale). A single-layer probe is the same module
over ``L = 1``.

- :class:`CTCProbe`: the CTC head of :mod:`w2v.plugins.ctc.head` with ``layers: weighted``
  (weighted layers, optional BiLSTM, linear), the very head a recipe's probe stage trains
  on a frozen model (``head: {name: ctc, layers: weighted}``, as the demo's probes), scored
  by the CTC objective (letters, phones);
- :class:`SpeakerProbe`: weighted layers -> mean over valid frames -> linear, scored by
  :class:`SpeakerObjective` (utterance-level cross-entropy).

Probes return a :class:`~w2v.interfaces.ModelOutput`, so the trainer and objectives treat
them as any model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.hidden_states import WeightedLayers
from w2v.interfaces import Batch, ModelOutput, Objective, ObjectiveOutput


def _source(batch: Batch | Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Batch):
        return batch.source, batch.lengths
    return batch, lengths


class CTCProbe(nn.Module):
    """:class:`~w2v.plugins.ctc.head.CTCHead` with ``layers: weighted`` (``model.head``, so
    the CTC objective and decoders fit): ``[B, T, L, D]`` -> logits ``[B, T, V]``."""

    def __init__(self, num_layers: int, dim: int, vocab_size: int, *, blank: int,
                 lstm_layers: int, lstm_dim: int, layer_norm: bool = False) -> None:
        super().__init__()
        from w2v.plugins.ctc.head import CTCHead

        config = CTCHead.Config(lstm_layers=lstm_layers, lstm_dim=lstm_dim, layers="weighted",
                                layer_norm=layer_norm)
        self.head = CTCHead(config, dim, vocab_size, blank=blank, hidden_states=num_layers)

    @property
    def layers(self) -> WeightedLayers:
        """The learned layer weights."""
        return self.head.layer_weights

    def forward(self, batch: Batch | Tensor, lengths: Tensor | None = None, **_: Any
                ) -> ModelOutput:
        x, lengths = _source(batch, lengths)
        return ModelOutput(local=x, lengths=lengths, context=x, logits=self.head(x, lengths))


class SpeakerProbe(nn.Module):
    """Weighted layers -> mean over valid frames -> ``Linear(D, speakers)``:
    ``[B, T, L, D]`` -> logits ``[B, speakers]`` (``ModelOutput.logits``)."""

    def __init__(self, num_layers: int, dim: int, num_speakers: int, *,
                 layer_norm: bool = False) -> None:
        super().__init__()
        self.layers = WeightedLayers(num_layers, layer_norm=layer_norm)
        self.proj = nn.Linear(dim, num_speakers)

    def forward(self, batch: Batch | Tensor, lengths: Tensor | None = None, **_: Any
                ) -> ModelOutput:
        x, lengths = _source(batch, lengths)
        x = self.layers(x)
        if lengths is None:
            pooled = x.mean(dim=1)
        else:
            valid = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).to(x)
            pooled = (x * valid[..., None]).sum(1) / lengths.clamp(min=1)[:, None].to(x)
        return ModelOutput(local=x, lengths=lengths, context=x, logits=self.proj(pooled))


class SpeakerObjective(Objective):
    """Cross-entropy of utterance-level logits ``[B, S]`` against ``batch.targets[:, 0]``,
    summed over utterances (``sample_size`` = utterances); ``accuracy`` in the stats."""

    def valid_metrics(self):
        return ("loss", "accuracy")

    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        target = batch.targets[:, 0]
        loss = F.cross_entropy(output.logits.float(), target, reduction="sum")
        correct = (output.logits.argmax(-1) == target).sum()
        return ObjectiveOutput(loss=loss, sample_size=batch.size,
                               stats={"accuracy": 100.0 * correct.detach() / max(batch.size, 1),
                                      "n_correct": correct.detach()})
