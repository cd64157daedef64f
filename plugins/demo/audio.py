"""Waveform helpers for the corpus builder: resampling with speed perturbation, WAV I/O.

NumPy only (no torch), so synthesis workers start quickly and never inherit a
parent's thread pools.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000


def _kaiser(u: np.ndarray, beta: float) -> np.ndarray:
    """Kaiser window evaluated at ``u`` in [-1, 1] (0 outside)."""
    inside = np.clip(1.0 - u * u, 0.0, None)
    return np.where(np.abs(u) <= 1.0, np.i0(beta * np.sqrt(inside)) / np.i0(beta), 0.0)


def resample(wave: np.ndarray, orig_rate: float, new_rate: float, *, half_taps: int = 16,
             beta: float = 8.0, phases: int = 2048, block: int = 16384) -> np.ndarray:
    """Band-limited (Kaiser-windowed sinc) resampling for any real rate ratio.

    The kernel is tabulated at ``phases`` fractional offsets, so the cost is one
    gather and one multiply-add per tap and output sample.

    Args:
        wave: [S] float samples.
        orig_rate, new_rate: rates in Hz (need not be integers: a speed
            perturbation by factor f resamples from ``f * rate``).
        half_taps: zero crossings of the sinc kernel on each side.
    Returns:
        [round(S * new_rate / orig_rate)] float32 samples.
    """
    wave = np.asarray(wave, dtype=np.float32)
    ratio = new_rate / orig_rate
    n_out = int(round(len(wave) * ratio))
    if n_out <= 0 or len(wave) == 0:
        return np.zeros(max(n_out, 0), dtype=np.float32)
    cutoff = 0.95 * min(1.0, ratio)  # as a fraction of the input Nyquist frequency
    width = int(np.ceil(half_taps / cutoff))
    offsets = np.arange(-width + 1, width + 1)
    dist = np.arange(phases)[:, None] / phases - offsets[None, :]  # [phases, 2 * width]
    table = (cutoff * np.sinc(cutoff * dist) * _kaiser(dist / width, beta)).astype(np.float32)
    padded = np.concatenate([np.zeros(width, np.float32), wave, np.zeros(width + 1, np.float32)])
    out = np.empty(n_out, dtype=np.float32)
    for lo in range(0, n_out, block):
        t = np.arange(lo, min(lo + block, n_out)) / ratio  # output times in input samples
        base = np.floor(t).astype(np.int64)
        phase = np.minimum(np.round((t - base) * phases).astype(np.int64), phases - 1)
        taps = padded[(base + width)[:, None] + offsets[None, :]]
        out[lo:lo + len(t)] = np.einsum("ij,ij->i", taps, table[phase])
    return out


def write_wav(path: Path, wave: np.ndarray, *, peak: float) -> int:
    """Scale ``wave`` to the given peak, write 16 kHz mono PCM-16; returns the sample count."""
    import soundfile

    wave = np.asarray(wave, dtype=np.float64)
    top = float(np.max(np.abs(wave))) if len(wave) else 0.0
    if top > 0:
        wave = wave * (peak / top)
    pcm = np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16")
    return len(pcm)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of a WAV file (channels averaged)."""
    import soundfile

    wave, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return wave.mean(axis=1), int(rate)
