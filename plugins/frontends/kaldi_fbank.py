"""Batched Kaldi-compatible log mel filterbanks.

Computes what ``torchaudio.compliance.kaldi.fbank`` (Kaldi's
``compute-fbank-feats``) computes with its defaults (no dither, per-frame DC
removal, pre-emphasis 0.97, Povey window, FFT size rounded up to a power of
two, power spectrum, triangular mel bins from 20 Hz to Nyquist,
``log(max(energy, float32 eps))``, ``snip_edges``: only frames that fit
entirely in the signal), but for a whole batch ``[B, S]`` at once instead
of one utterance at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.compliance.kaldi import get_mel_banks


def _next_power_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


class KaldiFbank(nn.Module):
    """``wave [B, S] -> log mel energies [B, T, num_mel_bins]``, ``T = 1 + (S - window) // hop``.

    Args:
        num_mel_bins: mel bands.
        sample_rate: samples per second.
        frame_length_ms / frame_shift_ms: window and hop (25 ms / 10 ms:
            400 / 160 samples at 16 kHz).
        preemphasis: pre-emphasis coefficient (0 disables).
        low_freq / high_freq: mel band edges in Hz (``high_freq <= 0`` is an
            offset from Nyquist).
    """

    def __init__(self, num_mel_bins: int = 80, sample_rate: int = 16000,
                 frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0,
                 preemphasis: float = 0.97, low_freq: float = 20.0, high_freq: float = 0.0) -> None:
        super().__init__()
        self.window_size = int(sample_rate * frame_length_ms / 1000)
        self.hop = int(sample_rate * frame_shift_ms / 1000)
        self.fft_size = _next_power_of_two(self.window_size)
        self.preemphasis = preemphasis
        window = torch.hann_window(self.window_size, periodic=False, dtype=torch.float64).pow(0.85)
        banks, _ = get_mel_banks(num_mel_bins, self.fft_size, float(sample_rate), low_freq,
                                 high_freq, 100.0, -500.0, 1.0)
        banks = F.pad(banks, (0, 1))                                       # the Nyquist bin
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("mel_banks", banks.T.contiguous().float(), persistent=False)

    def num_frames(self, lengths: Tensor) -> Tensor:
        """Frames that fit entirely in ``lengths`` samples."""
        return (torch.div(lengths - self.window_size, self.hop, rounding_mode="floor") + 1
                ).clamp(min=0)

    def forward(self, wave: Tensor) -> Tensor:
        if wave.shape[-1] < self.window_size:                              # no frame fits
            return wave.new_zeros(*wave.shape[:-1], 0, self.mel_banks.shape[1], dtype=torch.float32)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            frames = wave.float().unfold(-1, self.window_size, self.hop)   # [B, T, W]
            frames = frames - frames.mean(-1, keepdim=True)
            if self.preemphasis:
                previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
                frames = frames - self.preemphasis * previous
            spectrum = torch.fft.rfft(frames * self.window, n=self.fft_size).abs().pow(2)
            energies = spectrum @ self.mel_banks                           # [B, T, M]
            return energies.clamp(min=torch.finfo(torch.float32).eps).log()
