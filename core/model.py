"""The speech model: components wired together by constructor injection.

Everything inference or a later stage needs lives here (feature projection,
the masker with its mask embedding, the quantizer and where it is wired, a
CTC head); objectives own only loss-time parameters.
"""

from __future__ import annotations

from typing import Literal, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .interfaces import Aggregator, Encoder, EncoderOutput, Quantizer, Signal

QuantizeWhere = Literal["targets", "input", "both", "none"]


@attrs.define(kw_only=True)
class Features:
    """What :meth:`SpeechModel.extract_features` returns.

    Attributes:
        local: ``[B, T, C]`` encoder output as quantizer/targets see it.
        layers: raw output of each context block, ``[B, T, D]`` each.
        output: ``[B, T, D]`` final context output (final LayerNorm included).
        lengths: ``[B]`` valid frames, or None.
    """

    local: Tensor
    layers: list[Tensor]
    output: Tensor
    lengths: Tensor | None


class SpeechModel(nn.Module):
    """encoder -> [projection] -> [masker] -> aggregator, with an optional quantizer and head.

    Args:
        encoder: waveform to local features.
        aggregator: context network, or None (encoder-only models).
        quantizer: optional; ``quantize`` says where it is wired.
        masker: optional masker (owns the mask embedding), applied by objectives.
        head: optional output layer on the context (CTC), ``[B, T, D] -> [B, T, V]``.
        quantize: ``targets`` (wav2vec 2.0), ``input`` (vq-wav2vec), ``both`` or ``none``.
        normalize: zero-mean unit-variance waveform normalisation per utterance
            (wav2vec 2.0 LARGE); a model property stored in checkpoints.
        dropout_input: dropout after the projection (fairseq ``dropout_input``).
        dropout_features: dropout on the unmasked features used as targets.
        sample_rate: the rate the model expects.
    """

    def __init__(self, encoder: Encoder, aggregator: Aggregator | None = None,
                 quantizer: Quantizer | None = None, masker: nn.Module | None = None,
                 head: nn.Module | None = None, *, quantize: QuantizeWhere = "targets",
                 normalize: bool = False, dropout_input: float = 0.0, dropout_features: float = 0.0,
                 sample_rate: int = 16000) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        local = encoder.produces()
        source_dim = quantizer.produces().dim if quantizer is not None and \
            quantize in ("input", "both") else local.dim
        in_dim = aggregator.input_dim if aggregator is not None else source_dim
        self.projection: nn.Module = nn.Linear(source_dim, in_dim) if in_dim != source_dim \
            else nn.Identity()
        self.aggregator = aggregator
        self.masker = masker
        self.head = head
        self.quantize_where = quantize
        self.normalize = normalize
        self.dropout_input = nn.Dropout(dropout_input)
        self.dropout_features = nn.Dropout(dropout_features)
        self.sample_rate = sample_rate

    # ------------------------------------------------------------------ parts
    def local_signal(self) -> Signal:
        return self.encoder.produces()

    def context_signal(self) -> Signal:
        return self.aggregator.produces() if self.aggregator is not None else self.local_signal()

    def normalize_wave(self, wave: Tensor, lengths: Tensor | None) -> Tensor:
        """Per-utterance zero mean, unit variance over valid samples (when ``normalize``)."""
        if not self.normalize:
            return wave
        if lengths is None:
            return F.layer_norm(wave, wave.shape[-1:])
        valid = (torch.arange(wave.shape[1], device=wave.device)[None] < lengths[:, None]).to(wave)
        n = lengths.to(wave).clamp(min=1)[:, None]
        mean = (wave * valid).sum(1, keepdim=True) / n
        var = (((wave - mean) * valid) ** 2).sum(1, keepdim=True) / n
        return (wave - mean) / torch.sqrt(var + 1e-5) * valid

    def encode(self, wave: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``wave`` [B, S] -> local features [B, T, C] (normalisation applied inside)."""
        return self.encoder(self.normalize_wave(wave, lengths), lengths)

    def project(self, local: Tensor) -> Tensor:
        """Local (or input-quantized) features -> aggregator input: projection, dropout_input."""
        return self.dropout_input(self.projection(local))

    def aggregate(self, x: Tensor, lengths: Tensor | None = None,
                  layers: int | Sequence[int] | None = None):
        if self.aggregator is None:
            raise RuntimeError("this model has no aggregator")
        return self.aggregator(x, lengths, layers=layers)

    # -------------------------------------------------------------- inference
    def extract_features(self, wave: Tensor, lengths: Tensor | None = None,
                         layers: int | Sequence[int] | None = None) -> Features:
        """``wave`` [B, S] float at ``sample_rate`` -> :class:`Features` (no masking)."""
        enc = self.encode(wave, lengths)
        x = enc.features
        if self.quantize_where in ("input", "both") and self.quantizer is not None:
            x = self.quantizer(x, enc.lengths).vectors
        if self.aggregator is None:
            return Features(local=enc.features, layers=[], output=x, lengths=enc.lengths)
        out = self.aggregate(self.project(x), enc.lengths, layers=layers)
        return Features(local=enc.features, layers=out.layers, output=out.output,
                        lengths=out.lengths if out.lengths is not None else enc.lengths)

    def quantize(self, wave: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Discrete codes ``[B, T, G]`` of the local features."""
        if self.quantizer is None:
            raise RuntimeError("this model has no quantizer")
        enc = self.encode(wave, lengths)
        return self.quantizer(enc.features, enc.lengths).codes

    def transcribe(self, wave, **options):
        """Text of ``wave`` (``[S]`` -> str; ``[B, S]``, a list or paths -> list), for models
        whose head turns emissions into text (a CTC head: options are those of
        ``w2v.plugins.ctc.transcribe.transcribe``: ``decoder``, ``lm``, chunking)."""
        transcribe = getattr(self.head, "transcribe", None)
        if transcribe is None:
            from .errors import ConfigError

            raise ConfigError("this model has no output head that produces text (no CTC head): "
                              "a pretrained model must be fine-tuned before it can transcribe.",
                              hint="Fine-tune it (recipes/finetune/) or load a fine-tuned "
                                   "checkpoint.")
        return transcribe(self, wave, **options)

    def forward(self, wave: Tensor, lengths: Tensor | None = None) -> Features:
        return self.extract_features(wave, lengths)

    def set_num_updates(self, num_updates: int) -> None:
        """Tell every part the update count (temperature schedules read it)."""
        for m in self.modules():
            if m is not self and hasattr(m, "set_num_updates"):
                m.set_num_updates(num_updates)
