"""Reading one audio file into a checked mono float32 waveform.

``soundfile`` (libsndfile) decodes WAV, FLAC and OGG; stereo is averaged to
mono; a file at another rate is resampled with
``torchaudio.functional.resample``. Every problem raises
:class:`~w2v.data.skips.BadInput` (the dataset applies the bad-input policy):
besides undecodable files, samples that are not audio (NaN/inf, float samples
beyond :data:`MAX_FLOAT_PEAK`), all-zero files, and channels that cancel out
in the mono mix (a stereo file whose right channel is the left inverted).
"""

from __future__ import annotations

import logging
import os
import struct

import numpy as np
import soundfile as sf
import torch

from .skips import BadInput

log = logging.getLogger(__name__)

#: Float samples beyond this magnitude are refused: audio lives in [-1, 1], and a float WAV
#: at 1e30 makes every update non-finite. Between 1 and this they are used, with a warning.
MAX_FLOAT_PEAK = 100.0
#: A multichannel file whose mono mix peaks this far below its channels (-80 dB) has channels
#: that cancel out (one is the other inverted): the mix is silence, not the recording.
CANCELLED_RATIO = 1e-4

_warned_loud: set[str] = set()  # files already reported for samples beyond full scale


def _wav_truncated(path: str) -> bool:
    """True when a RIFF/WAVE header promises more bytes than the file holds."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        (riff_size,) = struct.unpack("<I", head[4:8])
        return riff_size != 0xFFFFFFFF and riff_size + 8 > os.path.getsize(path)
    except OSError:
        return False


def audio_info(path: str):
    """``soundfile.info`` of ``path``; BadInput if missing or undecodable."""
    if not os.path.isfile(path):
        raise BadInput("missing", path)
    try:
        return sf.info(path)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise BadInput("unreadable", path, str(exc).replace(f"'{path}'", "").strip(" :")) \
            from None


def read_audio(path: str, *, sample_rate: int, min_samples: int = 0,
               expected_samples: int | None = None, start: int = 0,
               stop: int | None = None) -> tuple[torch.Tensor, int]:
    """Read ``path`` (or its samples ``start:stop``) as a mono waveform at ``sample_rate``.

    Args:
        path: audio file.
        start, stop: a segment of the file in samples at its own rate (Kaldi
            ``segments``, Lhotse cuts); ``stop`` None means the end.
        sample_rate: target rate; other rates are resampled.
        min_samples: fewest samples (at ``sample_rate``) the caller can use, e.g.
            the encoder's receptive field.
        expected_samples: the manifest's count (at the file's own rate, of the
            segment when cut), checked when given.

    Returns:
        ``(wave [S] float32, file_rate)``.

    Raises:
        BadInput: missing, unreadable, truncated, empty, size mismatch,
            non-finite, out of range, all-zero, channels cancelling, or shorter than
            ``min_samples``.
    """
    info = audio_info(path)
    if info.frames == 0:
        raise BadInput("empty", path, "0 samples")
    if path.lower().endswith(".wav") and _wav_truncated(path):
        raise BadInput("truncated", path, f"the header promises more data than the "
                                          f"{os.path.getsize(path)} bytes present")
    end = info.frames if stop is None else stop
    if not 0 <= start < end <= info.frames:
        raise BadInput("size-mismatch", path, f"segment samples {start}:{end} lie outside the "
                                              f"file's {info.frames} samples")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True, start=start, stop=end)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise BadInput("truncated" if info.frames > 0 else "unreadable", path,
                       str(exc).replace(f"'{path}'", "").strip(" :")) from None
    if data.shape[0] != end - start:
        raise BadInput("truncated", path, f"decoded {data.shape[0]} of {end - start} samples")
    return checked_wave(data, int(rate), path, sample_rate=sample_rate, min_samples=min_samples,
                        expected_samples=expected_samples)


def checked_wave(data: np.ndarray, rate: int, path: str, *, sample_rate: int,
                 min_samples: int = 0, expected_samples: int | None = None
                 ) -> tuple[torch.Tensor, int]:
    """Decoded samples ``data`` ``[S, C]`` float32 at ``rate`` -> ``(wave [S'] at sample_rate,
    rate)``, with every check of :func:`read_audio` after decoding (``path`` names the
    input in messages; sources that decode from memory call this directly)."""
    if data.shape[0] == 0:
        raise BadInput("empty", path, "0 samples")
    if expected_samples is not None and data.shape[0] != expected_samples:
        raise BadInput("size-mismatch", path, f"the manifest says {expected_samples} samples, "
                                              f"the file has {data.shape[0]}; remake the manifest")
    wave = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    finite = np.isfinite(data)
    if not finite.all():
        first = int(np.argmin(finite.all(axis=1)))
        raise BadInput("non-finite", path, f"first at sample {first}")
    if not data.any():
        raise BadInput("silent", path, f"{data.shape[0]} zero samples")
    _check_level(data, wave, path)
    if rate != sample_rate:
        import torchaudio.functional as AF

        wave = AF.resample(wave, rate, sample_rate)
    if wave.shape[0] < min_samples:
        raise BadInput("too-short", path, f"{wave.shape[0]} samples at {sample_rate} Hz, the "
                                          f"model needs at least {min_samples}")
    return wave.contiguous(), int(rate)


def _check_level(data: np.ndarray, mono: torch.Tensor, path: str) -> None:
    """Refuse samples far beyond full scale and a mono mix in which the channels cancel;
    warn (once per file) about float samples a little beyond full scale.

    Args:
        data: the decoded, finite, not all-zero samples ``[S, C]``.
        mono: their channel average ``[S]``.
    """
    per_sample = np.abs(data).max(axis=1)
    peak = float(per_sample.max())
    if peak > MAX_FLOAT_PEAK:
        at = int(np.argmax(per_sample > MAX_FLOAT_PEAK))
        raise BadInput("out-of-range", path, f"|sample| reaches {peak:.3g} (first beyond "
                                             f"{MAX_FLOAT_PEAK:g} at sample {at}); audio is "
                                             f"expected within [-1, 1]")
    if peak > 1.0 and path not in _warned_loud:
        _warned_loud.add(path)
        log.warning("%s: float samples reach %.3g, beyond full scale [-1, 1]; used as they are "
                    "(rescale the file if that is not intended).", path, peak)
    if data.shape[1] > 1:
        mono_peak = float(mono.abs().max())
        if mono_peak <= CANCELLED_RATIO * peak:
            raise BadInput("cancelled", path, f"{data.shape[1]} channels, mix peak "
                                              f"{mono_peak:.3g}, channel peak {peak:.3g}: one "
                                              f"channel is the other inverted; keep one channel")
