"""Log-mel filterbank front end: the baseline encoder of the wav2vec papers.

Features are Kaldi-compatible filterbanks (see :mod:`.kaldi_fbank`; chosen
over ``torchaudio.transforms.MelSpectrogram`` because Kaldi fbanks are what
speech baselines, wav2letter included, are trained on, and because they
match ``torchaudio.compliance.kaldi.fbank`` exactly, which the tests check).
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from w2v.config import field, real, size
from w2v.errors import FitError
from w2v.interfaces import Encoder, EncoderOutput, Signal, waveform_signal

from .kaldi_fbank import KaldiFbank


@attrs.define(kw_only=True)
class LogMelConfig:
    num_mel_bins: int = size(80, 4, 512, "mel bands")
    frame_length_ms: float = real(25.0, 1.0, 1000.0, "analysis window in milliseconds")
    frame_shift_ms: float = real(10.0, 1.0, 1000.0, "hop between frames in milliseconds")
    cmvn: bool = field(True, "normalise each mel band to zero mean, unit variance over the "
                             "utterance's valid frames (makes the features non-causal)")
    dim: int = size(0, 0, 8192, "width of a trainable linear projection of the features; "
                                "0 = no projection (output width = num_mel_bins)")


def masked_cmvn(x: Tensor, lengths: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Per-utterance, per-channel mean and variance normalisation of ``x [B, T, C]`` over the
    first ``lengths[b]`` frames (all frames when None); padded frames come back as zeros."""
    if lengths is None:
        mask = torch.ones(x.shape[:2], device=x.device, dtype=x.dtype)
    else:
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).to(x.dtype)
    mask = mask.unsqueeze(-1)
    count = mask.sum(1, keepdim=True).clamp(min=1)
    mean = (x * mask).sum(1, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + eps) * mask


class LogMelEncoder(Encoder):
    """Waveform ``[B, S]`` -> log-mel frames ``[B, T, num_mel_bins or dim]``.

    ``T = 1 + (S - window) // hop`` (400 / 160 samples at 16 kHz). No
    trainable parameters unless ``dim > 0`` adds a linear projection. An
    utterance gives the same valid frames alone or padded in a batch, and
    padded frames are zeros.
    """

    Config = LogMelConfig

    def __init__(self, config: LogMelConfig, upstream: Signal | None = None) -> None:
        super().__init__()
        self.upstream = upstream or waveform_signal()
        n, dim = config.num_mel_bins, config.dim
        self.fbank = KaldiFbank(n, self.upstream.sample_rate, config.frame_length_ms,
                                config.frame_shift_ms)
        self.cmvn = config.cmvn
        self.out_dim = dim or n
        self.projection: nn.Module = nn.Linear(n, dim) if dim else nn.Identity()

    @classmethod
    def from_config(cls, config: LogMelConfig, upstream: Signal | None = None,
                    **context) -> "LogMelEncoder":
        if upstream is not None and upstream.kind != "waveform":
            raise FitError(f"the log-mel front end reads raw audio, but its input is "
                           f"{upstream.describe()}.")
        return cls(config, upstream)

    def produces(self) -> Signal:
        return self.upstream.then(kind="frames", dim=self.out_dim, stride=self.fbank.hop,
                                  receptive_field=self.fbank.window_size, causal=not self.cmvn)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return self.fbank.num_frames(lengths)

    def forward(self, source: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``source`` [B, S] -> :class:`EncoderOutput` with ``features`` [B, T, D]."""
        x = self.fbank(source)
        frames = None if lengths is None else self.output_lengths(lengths)
        if self.cmvn:
            x = masked_cmvn(x, frames)
        x = self.projection(x)
        if frames is not None:
            x = x * (torch.arange(x.shape[1], device=x.device)[None] < frames[:, None]
                     ).unsqueeze(-1).to(x.dtype)
        return EncoderOutput(features=x, lengths=frames)
