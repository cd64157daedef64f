"""BERT on discrete units (vq-wav2vec, Baevski et al. 2020, section 3.3).

* :class:`UnitEmbedding` (encoder ``unit_embedding``): unit ids ``[B, T]`` ->
  embeddings ``[B, T, D]``; one extra row is the ``[MASK]`` embedding (the
  model owns it, as design.md asks). Its vocabulary is the exported unit
  dictionary's size; a ``train`` stage over the ``units`` data source fills it in.
* :func:`span_mask`: the paper's masking: every valid position starts a span
  with probability ``p`` (``round(p * length)`` starts without replacement,
  rounded up at random), each span covers ``M`` consecutive units, spans
  may overlap (p = 0.05, M = 10 masks about 40% of the units).
* :class:`MaskedUnitObjective` (objective ``bert``): asks the model's forward to
  read the units with the masked ones replaced by ``[MASK]`` (optionally RoBERTa's
  10% random / 10% unchanged), and predicts the original units through an LM head (dense ->
  GELU -> LayerNorm -> output tied to the embedding), cross-entropy summed
  over masked units; ``sample_size`` = masked units.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import field, real, size
from w2v.errors import ConfigError, FitError
from w2v.interfaces import (Batch, Encoder, EncoderOutput, ModelOutput, Objective,
                            ObjectiveOutput, Signal, lengths_to_padding_mask)
from w2v.plugin_manager import component_name

#: fairseq dictionary layout: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, then units.
PAD_ID = 1
NUM_SPECIAL = 4


# ------------------------------------------------------------------ encoder
@attrs.define(kw_only=True)
class UnitEmbeddingConfig:
    dim: int = size(768, 8, 16384, "embedding width (BERT-base 768, BERT-small 512)")
    vocab_size: int | None = size(
        None, NUM_SPECIAL + 1, 1 << 22,
        "entries of the unit dictionary, specials included; null: the `train` stage sets "
        "it from the `units` data source's dictionary (a dry run before the export uses a "
        "placeholder)")
    frame_stride: int = size(160, 1, 1 << 16, "input samples per unit: 160 for vq-wav2vec's "
                                              "10 ms frames (the `train` stage sets it "
                                              "from the export)")
    max_positions: int = size(0, 0, 1 << 16, "learned absolute positions (RoBERTa); 0 = none, "
                                             "the context network's positional conv orders them")
    dropout: float = real(0.0, 0.0, 1.0, "dropout on the embeddings")


class UnitEmbedding(Encoder):
    """Unit ids ``[B, T]`` (padded with ``<pad>`` = 1) -> embeddings ``[B, T, dim]``.

    Built as ``UnitEmbedding(config, sample_rate=16000)``: the settings (vocabulary
    included; null gives a placeholder of ``NUM_SPECIAL + 1`` entries) from
    :class:`UnitEmbeddingConfig`, the upstream's sample rate as wiring.
    Row ``vocab_size`` of ``embed.weight`` is the ``[MASK]`` embedding
    (:attr:`mask_id`); padded positions give zeros.
    """

    Config = UnitEmbeddingConfig
    consumes = "tokens"
    no_smoke_reason = "reads unit ids, not audio; tests/wav2vec/test_bert.py exercises it"

    def __init__(self, config: UnitEmbeddingConfig, sample_rate: int = 16000) -> None:
        super().__init__()
        vocab_size = config.vocab_size if config.vocab_size is not None else NUM_SPECIAL + 1
        #: the vocabulary is a placeholder until the `train` stage sizes the config from its data
        self.stand_in = config.vocab_size is None
        dim = config.dim
        self.vocab_size = vocab_size
        self.dim = dim
        self.mask_id = vocab_size
        self.frame_stride = config.frame_stride
        self.sample_rate = sample_rate
        self.embed = nn.Embedding(vocab_size + 1, dim, padding_idx=PAD_ID)
        nn.init.normal_(self.embed.weight, mean=0.0, std=dim ** -0.5)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self.positions = nn.Embedding(config.max_positions, dim) if config.max_positions \
            else None
        if self.positions is not None:
            nn.init.normal_(self.positions.weight, mean=0.0, std=0.02)
        self.dropout = nn.Dropout(config.dropout)

    @classmethod
    def from_config(cls, config: UnitEmbeddingConfig, upstream: Signal | None = None,
                    **context: Any) -> "UnitEmbedding":
        return cls(config, upstream.sample_rate if upstream is not None else 16000)

    @classmethod
    def config_for_input(cls, config: UnitEmbeddingConfig, signal: Signal) -> UnitEmbeddingConfig:
        """``config`` sized by a token data source: its vocabulary and frame stride."""
        if signal.kind != "tokens":
            raise ConfigError(f"the unit_embedding encoder reads unit ids, but the data source "
                              f"gives {signal.kind}.", key="model.encoder",
                              hint="Read unit files with `data: {name: units, ...}`.")
        if config.vocab_size not in (None, signal.dim):
            raise ConfigError(f"`vocab_size` is {config.vocab_size}, but the unit dictionary "
                              f"has {signal.dim} entries.", key="model.encoder.vocab_size",
                              hint="Leave it null: the stage sets it from the dictionary.")
        return attrs.evolve(config, vocab_size=int(signal.dim), frame_stride=int(signal.stride))

    def describe_lines(self, local: Signal) -> list[str]:
        """``--dry-run``'s note when the vocabulary is a placeholder (no data read yet)."""
        if not self.stand_in:
            return []
        return [f"(encoder `unit_embedding`: the vocabulary comes from the `units` data when "
                f"the stage starts; a dry run does not read them, so this stage's parameter "
                f"counts use a placeholder of {self.vocab_size} entries)"]

    def produces(self) -> Signal:
        return Signal(kind="frames", dim=self.dim, sample_rate=self.sample_rate,
                      stride=self.frame_stride, receptive_field=self.frame_stride, causal=True)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return lengths

    def forward(self, source: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``source`` ``[B, T]`` long ids -> :class:`EncoderOutput` (``features`` ``[B, T, D]``)."""
        if source.dtype not in (torch.long, torch.int32, torch.int16, torch.uint8):
            raise FitError(f"the unit_embedding encoder reads unit ids, but its input is "
                           f"{source.dtype} {list(source.shape)} (audio?).",
                           hint="Train it on exported units (`data: {name: units}`).")
        x = self.embed(source.long())
        if self.positions is not None:
            T = source.shape[1]
            if T > self.positions.num_embeddings:
                raise ValueError(f"{T} units exceed max_positions {self.positions.num_embeddings}")
            x = x + self.positions.weight[:T]
        x = self.dropout(x)
        pad = lengths_to_padding_mask(lengths, source.shape[1])
        if pad is not None:
            x = x.masked_fill(pad[..., None], 0.0)
        return EncoderOutput(features=x, lengths=lengths)


# ------------------------------------------------------------------ masking
def span_mask(lengths: Tensor, max_len: int, mask_prob: float, mask_length: int, *,
              generator: torch.Generator | None = None) -> Tensor:
    """``[B, T]`` bool: spans of ``mask_length`` units from random starts (see module docs).

    Each utterance gets ``floor(mask_prob * length + U[0, 1))`` starts (at least 1), drawn
    without replacement from its valid positions; spans are cut at the valid length.
    """
    B, T = lengths.shape[0], max_len
    device = lengths.device
    valid = torch.arange(T, device=device)[None, :] < lengths[:, None]
    u = torch.rand(B, device=device, generator=generator)
    starts = (mask_prob * lengths.float() + u).floor().long().clamp(min=1)
    starts = torch.minimum(starts, lengths.clamp(min=1))
    scores = torch.rand(B, T, device=device, generator=generator).masked_fill(~valid, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)                        # rank of each position
    is_start = (rank < starts[:, None]) & valid
    window = F.max_pool1d(F.pad(is_start.float()[:, None], (mask_length - 1, 0)),
                          kernel_size=mask_length, stride=1)[:, 0]
    return (window > 0) & valid


# ------------------------------------------------------------------ objective
@attrs.define(kw_only=True)
class MaskedUnitConfig:
    mask_prob: float = real(0.05, 0.0, 1.0, "probability that a unit starts a masked span "
                                            "(the paper's p = 0.05)")
    mask_length: int = size(10, 1, 1024, "units per masked span (the paper's M = 10)")
    random_token_prob: float = real(0.0, 0.0, 1.0, "masked units replaced by a random unit "
                                                   "instead of [MASK] (RoBERTa: 0.1)")
    leave_unmasked_prob: float = real(0.0, 0.0, 1.0, "masked units left unchanged (RoBERTa: 0.1)")
    tie_embeddings: bool = field(True, "the output layer reuses the unit embedding (RoBERTa); "
                                       "needs the embedding width to equal the context width")

    def __attrs_post_init__(self) -> None:
        if self.random_token_prob + self.leave_unmasked_prob > 1.0:
            raise ConfigError("random_token_prob + leave_unmasked_prob must not exceed 1, found "
                              f"{self.random_token_prob + self.leave_unmasked_prob}.",
                              key="random_token_prob")


class UnitLMHead(nn.Module):
    """``[N, D]`` -> ``[N, V]``: dense, GELU, LayerNorm, then the (tied) output layer."""

    def __init__(self, dim: int, vocab_size: int, tied: nn.Embedding | None) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.layer_norm = nn.LayerNorm(dim)
        self.vocab_size = vocab_size
        self.proj = None if tied is not None else nn.Linear(dim, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self._tied = [tied]                       # a list: not registered as a submodule

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer_norm(F.gelu(self.dense(x)))
        weight = self._tied[0].weight[:self.vocab_size] if self.proj is None else self.proj.weight
        return F.linear(x, weight) + self.bias


class MaskedUnitObjective(Objective):
    """BERT masked-unit prediction over a ``unit_embedding`` model (see the module docstring).

    Stats: ``accuracy`` over masked units, ``loss_bits`` (per masked unit, bits),
    ``mask_fraction``.
    """

    Config = MaskedUnitConfig
    no_smoke_reason = "needs a unit_embedding model and unit-id batches; " \
                      "tests/wav2vec/test_bert.py exercises it"

    def __init__(self, config: MaskedUnitConfig, context_dim: int, embedding: nn.Embedding,
                 vocab_size: int, mask_id: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.mask_id = mask_id
        self.head = UnitLMHead(context_dim, vocab_size,
                               embedding if config.tie_embeddings else None)

    @classmethod
    def from_config(cls, config: MaskedUnitConfig, upstream: Signal | None = None, *,
                    model: nn.Module | None = None, **context: Any) -> "MaskedUnitObjective":
        encoder = getattr(model, "encoder", None)
        if not isinstance(encoder, UnitEmbedding):
            raise FitError(
                f"objective `bert` predicts masked units, but "
                f"{component_name('encoder', encoder)} is not `unit_embedding` and reads no "
                "unit ids.", hint="Use `model.encoder: {name: unit_embedding}` over "
                                          "`data: {name: units}`.")
        if model.aggregator is None:
            raise FitError("objective `bert` needs a context network, but the model has no "
                           "aggregator.", hint="Set `model.aggregator` (e.g. `name: transformer`).")
        dim = model.context_signal().dim
        if config.tie_embeddings and encoder.dim != dim:
            raise FitError(f"objective `bert` ties its output layer to the unit embedding (width "
                           f"{encoder.dim}), but {component_name('aggregator', model.aggregator)} "
                           f"produces width {dim}.",
                           hint="Set the embedding `dim` to the aggregator's `embed_dim`, or "
                                "`tie_embeddings: false`.")
        return cls(config, dim, encoder.embed, encoder.vocab_size, encoder.mask_id)

    def check_model(self, model: nn.Module) -> None:
        if getattr(model.aggregator, "structurally_causal", False):
            raise FitError("objective `bert` predicts each masked unit from both sides, but "
                           f"{component_name('aggregator', model.aggregator)} is causal.",
                           hint="Use a bidirectional context network (e.g. `transformer`), or "
                                "its `causal: false`.")

    def corrupt(self, source: Tensor, mask: Tensor) -> Tensor:
        """Masked positions -> ``[MASK]`` (or a random unit / unchanged, per the config)."""
        c = self.config
        x = source.masked_fill(mask, self.mask_id)
        if c.random_token_prob or c.leave_unmasked_prob:
            u = torch.rand(source.shape, device=source.device)
            keep = mask & (u < c.leave_unmasked_prob)
            rand = mask & (u >= c.leave_unmasked_prob) & \
                (u < c.leave_unmasked_prob + c.random_token_prob)
            random_units = torch.randint(NUM_SPECIAL, self.vocab_size, source.shape,
                                         device=source.device)
            x = torch.where(keep, source, torch.where(rand, random_units, x))
        return x

    def request(self, batch: Batch, model: nn.Module, step: int) -> dict[str, Any]:
        """The model reads the corrupted units; the mask says which ones to predict."""
        source = batch.source
        B, T = source.shape
        lengths = batch.lengths if batch.lengths is not None else \
            torch.full((B,), T, dtype=torch.long, device=source.device)
        mask = span_mask(lengths.to(source.device), T, self.config.mask_prob,
                         self.config.mask_length)
        corrupted = Batch(source=self.corrupt(source, mask), lengths=lengths, ids=batch.ids)
        return {"batch": corrupted, "mask": mask}

    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        mask = output.mask
        logits = self.head(output.context[mask]).float()               # [N, V]
        targets = batch.source[mask]
        loss = F.cross_entropy(logits, targets, reduction="sum")
        n = mask.sum()
        with torch.no_grad():
            correct = (logits.argmax(-1) == targets).sum()
            denom = n.clamp(min=1).to(logits.dtype)
            valid = output.frame_lengths().sum().clamp(min=1)
            stats = {"accuracy": correct.to(logits.dtype) / denom,
                     "loss_bits": loss.detach() / denom / math.log(2),
                     "mask_fraction": n.to(logits.dtype) / valid}
        return ObjectiveOutput(loss=loss, sample_size=n, stats=stats)
