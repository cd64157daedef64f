"""The ``precomputed`` encoder: frozen feature frames (a featurize output) as a model's input.

A downstream model on frozen features (the vq-wav2vec / wav2vec papers' acoustic
models on wav2vec ``c``, vq-wav2vec units, BERT outputs, or log-mel) is a
:class:`~w2v.model.SpeechModel` whose encoder passes the stored frames
through: ``source`` ``[B, T, dim]`` float -> ``[B, T, dim]``, lengths
unchanged. A ``train`` stage over the ``features`` data source sets ``dim`` and
``frame_stride`` from the features (:meth:`FeatureInput.config_for_input`), so a
recipe leaves them null.
"""

from __future__ import annotations

from typing import Any

import attrs
from torch import Tensor, nn

from w2v.config import field, real, size
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Encoder, EncoderOutput, Signal, lengths_to_padding_mask


@attrs.define(kw_only=True)
class FeatureInputConfig:
    dim: int | None = size(None, 1, 1 << 16, "feature width; null: the `train` stage sets it "
                                             "from the `features` data source")
    frame_stride: int = size(160, 1, 1 << 20, "input audio samples per feature frame (160 = "
                                              "100 Hz, 320 = 50 Hz); the `train` stage sets it "
                                              "from the features (160 when they do not say)")
    cmvn: bool = field(False, "normalise each channel to zero mean and unit variance over the "
                              "utterance's frames")
    dropout: float = real(0.0, 0.0, 1.0, "dropout on the input features")


class FeatureInput(Encoder):
    """Stored feature frames ``[B, T, dim]`` -> the same frames (optionally normalised).

    Padded frames (at or past ``lengths``) come back as zeros.
    """

    Config = FeatureInputConfig
    consumes = "features"
    no_smoke_reason = "reads precomputed feature frames, not audio; " \
                      "tests/wav2vec/test_features.py exercises it"

    def __init__(self, config: FeatureInputConfig, upstream: Signal | None = None) -> None:
        super().__init__()
        #: the width is a stand-in until the `train` stage sizes the config from its data
        self.stand_in = config.dim is None
        self.dim = config.dim if config.dim is not None else 1
        self.frame_stride = config.frame_stride
        self.cmvn = config.cmvn
        self.sample_rate = upstream.sample_rate if upstream is not None else 16000
        self.dropout = nn.Dropout(config.dropout)

    @classmethod
    def from_config(cls, config: FeatureInputConfig, upstream: Signal | None = None,
                    **context: Any) -> "FeatureInput":
        return cls(config, upstream)

    @classmethod
    def config_for_input(cls, config: FeatureInputConfig, signal: Signal) -> FeatureInputConfig:
        """``config`` sized by the data source's features (width and frame stride)."""
        if signal.kind != "features":
            raise ConfigError(f"the precomputed encoder reads feature frames, but the data "
                              f"source gives {signal.kind}.", key="model.encoder",
                              hint="Read feature shards with `data: {name: features, ...}`.")
        if config.dim not in (None, signal.dim):
            raise ConfigError(f"`dim` is {config.dim}, but the features are {signal.dim} wide.",
                              key="model.encoder.dim",
                              hint="Leave it null: the stage sets it from the features.")
        return attrs.evolve(config, dim=int(signal.dim), frame_stride=int(signal.stride))

    def describe_lines(self, local: Signal) -> list[str]:
        """``--dry-run``'s note when the width is a stand-in (no data read yet)."""
        if not self.stand_in:
            return []
        return ["(encoder `precomputed`: the width and frame rate come from the `features` "
                "data when the stage starts; a dry run does not read them, so this stage's "
                "widths and parameter counts use a 1-wide stand-in)"]

    def produces(self) -> Signal:
        return Signal(kind="features", dim=self.dim, sample_rate=self.sample_rate,
                      stride=self.frame_stride, receptive_field=self.frame_stride,
                      causal=not self.cmvn)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return lengths

    def forward(self, source: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``source`` ``[B, T, dim]`` float -> :class:`EncoderOutput`, features ``[B, T, dim]``."""
        if source.ndim != 3 or source.shape[-1] != self.dim or not source.is_floating_point():
            raise FitError(f"the precomputed encoder reads feature frames [B, T, {self.dim}], "
                           f"found {source.dtype} {list(source.shape)}.",
                           hint="Train it on the `features` data source (a featurize "
                                "output of that width).")
        x = source
        if self.cmvn:
            from w2v.plugins.frontends.logmel import masked_cmvn
            x = masked_cmvn(x, lengths)
        x = self.dropout(x)
        pad = lengths_to_padding_mask(lengths, x.shape[1])
        if pad is not None:
            x = x.masked_fill(pad[..., None], 0.0)
        return EncoderOutput(features=x, lengths=lengths)
