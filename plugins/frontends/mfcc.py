"""MFCC front end: the k-means targets of HuBERT's first iteration and of wav2vec-U 2.0's
auxiliary loss.

Kaldi-compatible MFCCs (``torchaudio.compliance.kaldi.mfcc`` with ``use_energy=False``:
23 mel bands, DCT-II to 13 cepstra, sinusoidal lifter 22) for a whole batch, with
their deltas and delta-deltas (window 5): 39 values per 10 ms frame, as HuBERT's
``dump_mfcc_feature.py`` computes them.
"""

from __future__ import annotations

import math

import attrs
import torch
import torchaudio
from torch import Tensor

from w2v.config import field, real, size
from w2v.errors import FitError
from w2v.interfaces import Encoder, EncoderOutput, Signal, waveform_signal

from .kaldi_fbank import KaldiFbank


@attrs.define(kw_only=True)
class MfccConfig:
    num_ceps: int = size(13, 1, 128, "cepstral coefficients")
    num_mel_bins: int = size(23, 4, 512, "mel bands")
    cepstral_lifter: float = real(22.0, 0.0, 1000.0, "sinusoidal lifter (0 = none)")
    frame_length_ms: float = real(25.0, 1.0, 1000.0, "analysis window in milliseconds")
    frame_shift_ms: float = real(10.0, 1.0, 1000.0, "hop between frames in milliseconds")
    deltas: bool = field(True, "append deltas and delta-deltas (window 5)")


class MfccEncoder(Encoder):
    """Waveform ``[B, S]`` -> MFCC frames ``[B, T, num_ceps x (3 with deltas)]``; no parameters."""

    Config = MfccConfig

    def __init__(self, config: MfccConfig, upstream: Signal | None = None) -> None:
        super().__init__()
        self.config = config
        self.upstream = upstream or waveform_signal()
        self.fbank = KaldiFbank(config.num_mel_bins, self.upstream.sample_rate,
                                config.frame_length_ms, config.frame_shift_ms)
        n = config.num_mel_bins
        dct = torchaudio.functional.create_dct(n, n, "ortho")[:, :config.num_ceps]
        lifter = torch.ones(config.num_ceps)
        if config.cepstral_lifter:
            i = torch.arange(config.num_ceps, dtype=torch.float64)
            lifter = (1 + 0.5 * config.cepstral_lifter
                      * torch.sin(math.pi * i / config.cepstral_lifter)).float()
        self.register_buffer("dct", dct * lifter, persistent=False)

    @classmethod
    def from_config(cls, config: MfccConfig, upstream: Signal | None = None,
                    **context) -> "MfccEncoder":
        if upstream is not None and upstream.kind != "waveform":
            raise FitError(f"the MFCC front end reads raw audio, but its input is "
                           f"{upstream.describe()}.")
        return cls(config, upstream)

    @property
    def dim(self) -> int:
        return self.config.num_ceps * (3 if self.config.deltas else 1)

    def produces(self) -> Signal:
        return self.upstream.then(kind="frames", dim=self.dim, stride=self.fbank.hop,
                                  receptive_field=self.fbank.window_size, causal=False)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return self.fbank.num_frames(lengths)

    @staticmethod
    def _deltas(x: Tensor, frames: Tensor | None) -> Tensor:
        """Deltas of ``x`` ``[B, T, C]`` over each utterance's own frames: the last valid
        frame is repeated past the end, as for an utterance alone."""
        if frames is not None:
            last = torch.minimum(torch.arange(x.shape[1], device=x.device)[None],
                                 (frames - 1).clamp(min=0)[:, None])
            x = x.gather(1, last[..., None].expand_as(x))
        return torchaudio.functional.compute_deltas(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, source: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        x = self.fbank(source) @ self.dct                        # [B, T, C]
        frames = None if lengths is None else self.output_lengths(lengths)
        if self.config.deltas:
            d1 = self._deltas(x, frames)
            x = torch.cat([x, d1, self._deltas(d1, frames)], -1)
        if frames is not None:
            x = x * (torch.arange(x.shape[1], device=x.device)[None] < frames[:, None]
                     ).unsqueeze(-1).to(x.dtype)
        return EncoderOutput(features=x, lengths=frames)
