"""A model's hidden states, and SUPERB's learned weighted sum of them.

The hidden states are, in order: ``input`` (what enters the context network: the projected,
or projected quantized, local features, before dropout and masking), then the raw output of
each context block ``0 .. L-1`` (:attr:`AggregatorOutput.layers`; block ``k`` is ``w2vrun
featurize --layer k``). A model without a context network has one, its encoder output
(``encoder``). ``input`` is left out when its width differs from the blocks' (so all stack).

A head that sets ``reads_hidden_states`` gets them stacked, ``[B, T, L, D]``, instead of the
context ``[B, T, D]`` (see :meth:`w2v.model.SpeechModel.forward`); :class:`WeightedLayers`
turns the stack into one ``[B, T, D]`` sequence. The downstream benchmark's probes and a
recipe's ``head: {name: ctc, layers: weighted}`` use the same two pieces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def hidden_state_names(aggregator: nn.Module | None, context_dim: int) -> list[str]:
    """Names of the hidden states of a model with ``aggregator`` (None: encoder only) whose
    context is ``context_dim`` wide."""
    if aggregator is None:
        return ["encoder"]
    blocks = [str(i) for i in range(aggregator.num_layers)]
    fits = getattr(aggregator, "input_dim", context_dim) == context_dim
    return (["input"] if fits else []) + blocks


class WeightedLayers(nn.Module):
    """``[B, T, L, D]`` -> ``[B, T, D]``: ``sum_l softmax(w)_l * LN(x_l)`` (SUPERB's featurizer).

    Args:
        num_layers: L (the weights start equal).
        layer_norm: normalise each layer over D (no affine parameters) before the sum, so the
            weights compare usefulness rather than scale.
    """

    def __init__(self, num_layers: int, *, layer_norm: bool = False) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.layer_norm = layer_norm

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] != self.weights.shape[0]:
            raise ValueError(f"expected {self.weights.shape[0]} layers, found {x.shape[2]}")
        if self.layer_norm:
            x = F.layer_norm(x, x.shape[-1:])
        return torch.einsum("btld,l->btd", x, self.normalized().to(x.dtype))

    def normalized(self) -> Tensor:
        """The softmax weights ``[L]`` (they sum to 1)."""
        return self.weights.softmax(dim=0)
