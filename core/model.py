"""The speech model: components wired together by constructor injection.

Everything inference or a later stage needs lives here (feature projection,
the masker with its mask embedding, the quantizer and where it is wired, a
CTC head); objectives own only loss-time parameters. :meth:`SpeechModel.forward`
runs the chain once (encode -> quantize -> project -> mask -> aggregate -> head)
and returns a :class:`~w2v.interfaces.ModelOutput` with what every objective
scores; ``extract_features`` and emissions are the same forward without a mask.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dropout import Dropout
from .errors import ConfigError, FitError
from .hidden_states import hidden_state_names
from .inputs import as_source
from .interfaces import (Aggregator, Batch, Encoder, EncoderOutput, Masker, MaskRequest,
                         ModelOutput, Quantizer, Signal, TargetRequest)

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
        masker: optional masker (owns the mask embedding); applies the masks objectives ask for.
        head: optional output layer on the context (CTC), ``[B, T, D] -> [B, T, V]``.
        quantize: ``targets`` (wav2vec 2.0), ``input`` (vq-wav2vec), ``both`` or ``none``.
        normalize: zero-mean unit-variance waveform normalisation per utterance
            (wav2vec 2.0 LARGE); a model property stored in checkpoints.
        dropout_input: dropout after the projection (fairseq ``dropout_input``).
        dropout_features: dropout on the unmasked features used as targets.
        sample_rate: the rate the model expects.
    """

    def __init__(self, encoder: Encoder, aggregator: Aggregator | None = None,
                 quantizer: Quantizer | None = None, masker: Masker | None = None,
                 head: nn.Module | None = None, *, quantize: QuantizeWhere = "targets",
                 normalize: bool = False, dropout_input: float = 0.0, dropout_features: float = 0.0,
                 sample_rate: int = 16000) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.quantize_where = quantize
        local = encoder.produces()
        source_dim = quantizer.produces().dim if self.quantizes_input else local.dim
        in_dim = aggregator.input_dim if aggregator is not None else source_dim
        self.projection: nn.Module = nn.Linear(source_dim, in_dim) if in_dim != source_dim \
            else nn.Identity()
        self.aggregator = aggregator
        self.masker = masker
        self.head = head
        self.normalize = normalize
        self.dropout_input = Dropout(dropout_input)
        self.dropout_features = Dropout(dropout_features)
        self.sample_rate = sample_rate

    # ------------------------------------------------------- quantizer placement
    @property
    def quantizes_input(self) -> bool:
        """True when code vectors feed the aggregator (vq-wav2vec)."""
        return self.quantizer is not None and self.quantize_where in ("input", "both")

    @property
    def quantizes_targets(self) -> bool:
        """True when objectives score against code vectors (wav2vec 2.0)."""
        return self.quantizer is not None and self.quantize_where in ("targets", "both")

    def target_signal(self) -> Signal:
        """What the targets of :meth:`forward` are: code vectors or local features."""
        return self.quantizer.produces() if self.quantizes_targets else self.local_signal()

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

    # ---------------------------------------------------------------- forward
    def forward(self, batch: Batch | Tensor, lengths: Tensor | None = None, *,
                mask: MaskRequest = False, targets: TargetRequest = "none",
                layers: int | Sequence[int] | None = None, head: bool = True) -> ModelOutput:
        """The chain, once: encode -> quantize -> project -> mask -> aggregate -> head.

        Args:
            batch: a :class:`Batch` or its ``source`` tensor (``lengths`` beside it).
            mask: False, True (the masker samples), a mapping of masker settings to
                sample with, or a ``[B, T]`` bool mask (applied by the masker; recorded
                as is when the model has none, for an objective that masked the input).
            targets: ``masked``: the unmasked features (``dropout_features`` applied) at
                the masked frames, quantized when the quantizer is wired to targets;
                ``all``: every frame's local features, quantized likewise (one quantizer
                run shared with the input when wired to both); ``none``.
            layers: stop the context network after these blocks (no head then).
            head: apply the output head when the model has one.
        """
        source = batch.source if isinstance(batch, Batch) else batch
        lengths = batch.lengths if isinstance(batch, Batch) else lengths
        enc = self.encode(source, lengths)
        local, lengths = enc.features, enc.lengths
        unmasked = self.dropout_features(local) if targets == "masked" else local
        out = ModelOutput(local=local, lengths=lengths, penalty=enc.penalty)
        if self.quantizes_input:
            out.quantized_input = self.quantizer(local, lengths)
        if targets == "all":
            out.targets = local
            if self.quantizes_targets:
                out.quantized_targets = out.quantized_input or self.quantizer(local, lengths)
        x = out.quantized_input.vectors if out.quantized_input is not None else local
        if self.aggregator is None:
            if mask is not False and mask is not None:
                raise FitError("masking needs a context network to predict the masked frames, "
                               "but the model has no aggregator.", key="model.aggregator")
            out.context = x
        else:
            x, out.mask = self._mask(self.project(x), lengths, mask)
            agg = self.aggregator(x, lengths, layers=layers)
            out.context, out.layers = agg.output, agg.layers
            if agg.lengths is not None:
                out.lengths = agg.lengths
            if targets == "masked" and out.mask is not None:
                out.targets = unmasked[out.mask]                                  # [M, C]
                if self.quantizes_targets and out.targets.shape[0]:
                    q = self.quantizer(out.targets[None], None)
                    out.quantized_targets = attrs.evolve(q, vectors=q.vectors[0],
                                                         codes=q.codes[0])
        if head and self.head is not None and layers is None:
            x = self.hidden_states(out) if getattr(self.head, "reads_hidden_states", False) \
                else out.context
            out.logits = self.head(x, out.lengths)
            out.head_extra = self.head.extra_outputs()
            if out.lengths is not None:
                out.logit_lengths = self.head.output_lengths(out.lengths, out.context.shape[1])
        return out

    def hidden_state_names(self) -> list[str]:
        """Names of :meth:`hidden_states`' layers (see :mod:`w2v.hidden_states`)."""
        return hidden_state_names(self.aggregator, self.context_signal().dim)

    def hidden_states(self, out: ModelOutput) -> Tensor:
        """The hidden states of a forward's ``out`` stacked, ``[B, T, L, D]``: the
        aggregator's input (projected, before dropout and masking) when it is the blocks'
        width, then every block's raw output; the encoder output alone without an
        aggregator."""
        if self.aggregator is None:
            return out.context[:, :, None]
        layers = list(out.layers)
        if len(layers) != self.aggregator.num_layers:
            raise RuntimeError("hidden states need every block's output (a forward without "
                               "`layers=`)")
        if self.hidden_state_names()[0] == "input":
            source = out.quantized_input.vectors if out.quantized_input is not None else out.local
            layers.insert(0, self.projection(source))
        return torch.stack(layers, dim=2)

    def _mask(self, x: Tensor, lengths: Tensor | None, request: MaskRequest
              ) -> tuple[Tensor, Tensor | None]:
        """``x`` ``[B, T, D]`` masked as requested, and the ``[B, T]`` mask (or None)."""
        if request is None or request is False:
            return x, None
        if isinstance(request, Tensor):
            if request.shape != x.shape[:2]:
                raise ConfigError(f"the mask must be [B, T] = {list(x.shape[:2])}, found "
                                  f"{list(request.shape)}.")
            mask = request.to(device=x.device, dtype=torch.bool)
            return (self.masker(x, lengths, mask=mask)[0] if self.masker is not None else x), mask
        if self.masker is None:
            raise FitError("the objective asks for a mask, but the model has no masker.",
                           key="model.masker", hint="Add `model: {masker: {name: span}}`.")
        settings = {} if request is True else dict(request)
        return self.masker(x, lengths, **settings)

    # -------------------------------------------------------------- inference
    def inputs(self, source: Any, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """A batch tensor and lengths from a batch, one utterance, audio paths or a list
        (see :func:`w2v.inputs.as_source`)."""
        p = next(self.parameters(), None)
        return as_source(source, lengths, kind=self.encoder.consumes, sample_rate=self.sample_rate,
                         device=p.device if p is not None else None)

    def extract_features(self, wave: Any, lengths: Tensor | None = None,
                         layers: int | Sequence[int] | None = None) -> Features:
        """:class:`Features` of ``wave`` (no masking): ``[B, S]`` float at ``sample_rate``
        with optional ``lengths``, one ``[S]`` waveform or an audio file (a batch of one),
        or a list of waveforms and paths (padded; ``lengths`` returned)."""
        out = self(*self.inputs(wave, lengths), layers=layers, head=False)
        return Features(local=out.local, layers=out.layers, output=out.context,
                        lengths=out.lengths)

    def quantize(self, wave: Any, lengths: Tensor | None = None) -> Tensor:
        """Discrete codes ``[B, T, G]`` of the local features."""
        if self.quantizer is None:
            raise RuntimeError("this model has no quantizer")
        enc = self.encode(*self.inputs(wave, lengths))
        return self.quantizer(enc.features, enc.lengths).codes

    def transcribe(self, wave, **options):
        """Text of ``wave`` (``[S]`` -> str; ``[B, S]``, a list or paths -> list), for models
        whose head names a transcriber (a CTC head: options are those of
        ``w2v.plugins.ctc.transcribe.transcribe``: ``decoder``, ``lm``, chunking)."""
        target = getattr(self.head, "transcriber", None)
        if target is None:
            raise ConfigError("this model has no output head that produces text (no CTC head): "
                              "a pretrained model must be fine-tuned before it can transcribe.",
                              hint="Fine-tune it (recipes/finetune/) or load a fine-tuned "
                                   "checkpoint.")
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)(self, wave, **options)

    def set_num_updates(self, num_updates: int) -> None:
        """Tell every part the update count (temperature schedules read it)."""
        for m in self.modules():
            if m is not self and hasattr(m, "set_num_updates"):
                m.set_num_updates(num_updates)
