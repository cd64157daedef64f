"""The CTC output layer (component kind ``head``, name ``ctc``) and CTC emissions.

The head belongs to the model (inference needs it): a recipe puts it in
``model.head: {name: ctc}`` and the label dictionary sizes it. fairseq keeps it
as ``w2v_encoder.proj``, Hugging Face as ``lm_head``; here it is
``model.head.proj`` (``weight`` ``[V, D]``, ``bias`` ``[V]``).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import choice, field, real, size
from w2v.data.dictionary import as_dictionary
from w2v.errors import ConfigError
from w2v.hidden_states import WeightedLayers
from w2v.interfaces import Head, ModelOutput, Signal, lengths_to_padding_mask

BlankMode = Literal["add", "set"]
HeadInput = Literal["last", "weighted"]


@attrs.define(kw_only=True)
class CTCHeadConfig:
    dropout: float = real(0.0, 0.0, 1.0, "dropout before the output layer (fairseq final_dropout)")
    blank_weight: float = real(0.0, None, None, "bias on the blank logit (fairseq blank_weight; "
                                                "0 with `add` = off)")
    blank_mode: BlankMode = choice("add", "`add` adds blank_weight to the blank logit, `set` "
                                          "replaces the blank logit by it")
    lstm_layers: int = size(0, 0, 8, "bidirectional LSTM layers before the output layer (a "
                                     "probe on frozen features); 0 = linear head, as fairseq")
    lstm_dim: int = size(256, 1, 8192, "LSTM width per direction")
    layers: HeadInput = choice("last", "what the head reads: `last`, the context output; "
                                       "`weighted`, a learned softmax-weighted sum of every "
                                       "hidden state (SUPERB's probe: the context network's "
                                       "input and each block)")
    layer_norm: bool = field(False, "with `layers: weighted`, layer-normalise each hidden "
                                    "state before the sum")


def force_blank(logits: Tensor, lengths: Tensor | None, blank: int) -> Tensor:
    """``logits`` ``[B, T, V]`` with padded frames made certain blanks (fairseq's CTC model):
    blank logit 0, every other logit the dtype's lowest value."""
    if lengths is None:
        return logits
    pad = lengths_to_padding_mask(lengths, logits.shape[1])
    forced = torch.full(logits.shape[-1:], torch.finfo(logits.dtype).min, dtype=logits.dtype,
                        device=logits.device)
    forced[blank] = 0.0
    return torch.where(pad[..., None], forced, logits)


class CTCHead(Head):
    """Final dropout + ``Linear(D, V)``: context ``[B, T, D]`` -> logits ``[B, T, V]``.

    Built from the context signal (D) and the ``dictionary=`` context (V, blank):
    ``CTCHead(config, input_dim, vocab_size, blank)`` (blank 0 for fairseq and Hugging Face
    vocabularies); the settings (dropout, fairseq's blank bias, the probe LSTM) are
    :class:`CTCHeadConfig`'s. With ``layers: weighted`` it reads the model's
    ``hidden_states`` stacked, ``[B, T, L, D]``, and starts with
    :class:`~w2v.hidden_states.WeightedLayers` (``layer_weights``) over them.
    """

    Config = CTCHeadConfig
    #: what ``model.transcribe`` calls: the free function over this head's emissions
    transcriber = "w2v.plugins.ctc.transcribe:transcribe"

    def __init__(self, config: CTCHeadConfig, input_dim: int, vocab_size: int,
                 blank: int = 0, hidden_states: int | None = None) -> None:
        super().__init__()
        weighted = config.layers == "weighted"
        if weighted and not hidden_states:
            raise ValueError("`layers: weighted` needs the number of hidden states")
        self.layer_weights = WeightedLayers(hidden_states, layer_norm=config.layer_norm) \
            if weighted else None
        layers, width = config.lstm_layers, config.lstm_dim
        self.lstm = nn.LSTM(input_dim, width, num_layers=layers, batch_first=True,
                            bidirectional=True) if layers else None
        if self.lstm is not None:
            input_dim = 2 * width
        if not 0 <= blank < vocab_size:
            raise ValueError(f"blank id {blank} outside a vocabulary of {vocab_size}")
        if config.blank_mode not in ("add", "set"):
            raise ValueError(f"blank_mode must be `add` or `set`, found {config.blank_mode!r}")
        self.dropout = nn.Dropout(config.dropout)
        self.proj = nn.Linear(input_dim, vocab_size)
        nn.init.xavier_uniform_(self.proj.weight)   # fairseq's Linear()
        nn.init.zeros_(self.proj.bias)
        self.blank = blank
        self.blank_weight = config.blank_weight
        self.blank_mode = config.blank_mode

    @classmethod
    def from_config(cls, config: CTCHeadConfig, upstream: Signal | None = None, **context: Any
                    ) -> "CTCHead":
        dictionary = as_dictionary(context.get("dictionary"))
        if upstream is None or dictionary is None:
            raise ConfigError("the ctc head needs the context signal (its width) and the label "
                              "dictionary (its size).",
                              hint="Set `data.labels` (and `data.dictionary`) for this stage.")
        return cls(config, upstream.dim, len(dictionary), dictionary.blank,
                   hidden_states=context.get("hidden_states"))

    @property
    def reads_hidden_states(self) -> bool:
        """True with ``layers: weighted``: the model passes its stacked hidden states."""
        return self.layer_weights is not None

    @property
    def vocab_size(self) -> int:
        return self.proj.out_features

    @classmethod
    def dry_run_dictionary(cls, labels: str | None):
        """fairseq's letter set (``dict.ltr.txt`` of LibriSpeech) as a stand-in; none without
        labels (a CTC head is sized by them)."""
        from w2v.data.dictionary import Dictionary
        if labels is None:
            return None
        return Dictionary.from_symbols(["|", *"ETAOINSHRDLUCMFWYPVBGKQJXZ'"])

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``x`` ``[B, T, D]`` (``[B, T, L, D]`` with ``layers: weighted``) -> logits
        ``[B, T, V]``; frames at or past ``lengths`` are blank."""
        if self.layer_weights is not None:
            x = self.layer_weights(x)
        if self.lstm is not None:
            x = self._run_lstm(x, lengths)
        logits = self.proj(self.dropout(x))
        if self.blank_mode == "set":
            is_blank = torch.arange(logits.shape[-1], device=logits.device) == self.blank
            logits = torch.where(is_blank, torch.as_tensor(self.blank_weight, dtype=logits.dtype,
                                                           device=logits.device), logits)
        elif self.blank_weight:
            bias = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
            bias[self.blank] = self.blank_weight
            logits = logits + bias
        return force_blank(logits, lengths, self.blank)

    def _run_lstm(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """The BiLSTM over valid frames only (padding never reaches the backward direction),
        padded frames zero: what a packed sequence gives. Each layer runs its two directions
        on padded batches, the backward one on every utterance reversed within its length (a
        gather), because the packed path's backward pass is quadratic in length on CPUs
        (23x slower on 15 s utterances)."""
        if lengths is None:
            return self.lstm(x)[0]
        lstm = self.lstm
        steps = torch.arange(x.shape[1], device=x.device)
        lengths = lengths.to(x.device).clamp(min=1)[:, None]
        flip = torch.where(steps[None] < lengths, lengths - 1 - steps[None], steps[None])
        zeros = x.new_zeros(1, x.shape[0], lstm.hidden_size)
        for layer in range(lstm.num_layers):
            if layer and lstm.dropout and self.training:
                x = F.dropout(x, lstm.dropout)
            outputs = []
            for suffix in ("", "_reverse"):
                weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in
                           ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                index = flip[..., None].expand(-1, -1, x.shape[-1]) if suffix else None
                y = torch.lstm(x.gather(1, index) if suffix else x, (zeros, zeros), weights,
                               True, 1, 0.0, self.training, False, True)[0]
                outputs.append(y.gather(1, flip[..., None].expand_as(y)) if suffix else y)
            x = torch.cat(outputs, dim=-1)
        return x * (steps[None] < lengths)[..., None].to(x.dtype)


def attach_ctc_head(model: nn.Module, vocab_size: int, config: CTCHeadConfig | None = None,
                    *, blank: int = 0) -> nn.Module:
    """Give ``model`` (a :class:`w2v.model.SpeechModel`) a fresh :class:`CTCHead` on its
    context output; returns ``model`` (recipes use ``model.head: {name: ctc}`` instead)."""
    model.head = CTCHead(config or CTCHeadConfig(), model.context_signal().dim, vocab_size, blank)
    return model


def ctc_log_probs(output: ModelOutput, blank: int) -> tuple[Tensor, Tensor]:
    """``(log_probs [B, T, V] float32, frames [B])`` of a forward's head logits, padded
    frames forced to blank (any head: the forcing is the CTC convention, not the head's)."""
    logits = force_blank(output.logits, output.lengths, blank)
    B, T = logits.shape[:2]
    frames = output.lengths if output.lengths is not None else \
        torch.full((B,), T, dtype=torch.long, device=logits.device)
    return F.log_softmax(logits.float(), dim=-1), frames


@torch.no_grad()
def emissions(model: nn.Module, wave: Tensor, lengths: Tensor | None = None
              ) -> tuple[Tensor, Tensor | None]:
    """CTC log-probabilities of a waveform batch, as decoders take them: the model's
    forward without a mask.

    Returns:
        ``(log_probs [B, T, V] float32, frame lengths [B] or None)``.
    """
    output = model(wave, lengths)
    return ctc_log_probs(output, getattr(model.head, "blank", 0))[0], output.lengths
