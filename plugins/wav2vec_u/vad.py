"""Energy-based voice activity detection, and the sample maps that undo silence removal.

fairseq's wav2vec-U runs rVAD (``scripts/vads.py``): per utterance, speech intervals in
samples (``start:end`` pairs a line, 10 ms frames), then ``remove_silence.py`` keeps
only those intervals. w2v detects speech from frame energies instead (no pitch or
spectral-flatness stage, no third-party checkout), vectorised over the frames:

1. ``levels``: each frame's energy in dB (DC removed), frames of ``frame`` samples
   every ``shift``;
2. a frame is speech when its level lies above ``floor + threshold * (peak - floor)``,
   where ``floor`` and ``peak`` are low and high percentiles of the utterance's own
   levels (so the rule adapts to gain and noise level); an utterance whose levels span
   less than ``min_range_db`` (digital silence, steady noise) has no speech;
3. pauses (silences between speech) shorter than ``min_silence`` frames are kept, then
   speech runs shorter than ``min_speech`` frames are dropped (clicks);
4. each speech run becomes a sample interval, widened by ``pad`` samples on both sides
   and merged with its neighbours where they meet.

:func:`to_original` and :func:`to_trimmed` map sample positions between the trimmed
audio (the kept intervals back to back) and the original.
"""

from __future__ import annotations

import attrs
import torch


@attrs.frozen(kw_only=True)
class VadSettings:
    """The detector's settings, in samples and frames (the stage converts from ms)."""

    frame: int                    # samples per analysis frame
    shift: int                    # samples between frame starts
    threshold: float = 0.3        # fraction of the way from floor to peak level
    floor_percentile: float = 5.0
    peak_percentile: float = 95.0
    min_range_db: float = 15.0    # peak - floor below this: no speech at all
    min_speech: int = 3           # frames
    min_silence: int = 20         # frames
    pad: int = 0                  # samples kept around each speech run


def frame_levels(wave: torch.Tensor, frame: int, shift: int) -> torch.Tensor:
    """``wave`` ``[S]`` -> ``[F]`` energy of each frame in dB (mean removed, floor -100 dB);
    frame ``i`` covers samples ``[i * shift, i * shift + frame)``, the tail zero-padded."""
    n = max(1, -(-max(int(wave.shape[0]) - frame, 0) // shift) + 1)
    padded = torch.nn.functional.pad(wave.float(), (0, (n - 1) * shift + frame - wave.shape[0]))
    frames = padded.unfold(0, frame, shift)
    power = (frames - frames.mean(dim=1, keepdim=True)).pow(2).mean(dim=1)
    return 10.0 * torch.log10(power.clamp_min(1e-10))


def speech_mask(levels: torch.Tensor, s: VadSettings) -> torch.Tensor:
    """``[F]`` bool: frames above the utterance's threshold (all False when the levels span
    less than ``min_range_db``), before smoothing."""
    q = torch.tensor([s.floor_percentile, s.peak_percentile], dtype=levels.dtype) / 100.0
    floor, peak = torch.quantile(levels, q).tolist()
    if peak - floor < s.min_range_db:
        return torch.zeros_like(levels, dtype=torch.bool)
    return levels > floor + s.threshold * (peak - floor)


def runs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run-length code of ``mask`` ``[F]``: ``(values [R] bool, starts [R], lengths [R])``."""
    change = torch.ones_like(mask)
    change[1:] = mask[1:] != mask[:-1]
    starts = change.nonzero().squeeze(1)
    lengths = torch.diff(starts, append=torch.tensor([mask.shape[0]]))
    return mask[starts], starts, lengths


def smooth(mask: torch.Tensor, min_speech: int, min_silence: int) -> torch.Tensor:
    """Fill pauses (silences between speech) shorter than ``min_silence`` frames, then
    drop speech runs shorter than ``min_speech`` frames; ``[F]`` -> ``[F]``. Leading and
    trailing silence is left silent whatever its length."""
    if mask.numel() == 0:
        return mask
    values, _, lengths = runs(mask)
    interior = torch.zeros_like(values)
    interior[1:-1] = True
    values = values | (lengths < min_silence) & interior
    mask = values.repeat_interleave(lengths)
    values, _, lengths = runs(mask)
    values = values & (lengths >= min_speech)
    return values.repeat_interleave(lengths)


def mask_to_intervals(mask: torch.Tensor, samples: int, shift: int, frame: int, pad: int
                      ) -> torch.Tensor:
    """Speech frames ``[F]`` -> ``[K, 2]`` int64 sample intervals ``[start, end)`` of an
    utterance of ``samples`` samples: frame ``i`` stands for the ``shift`` samples around
    its centre; each run is widened by ``pad`` and runs that then touch are merged."""
    values, starts, lengths = runs(mask)
    starts, ends = starts[values], (starts + lengths)[values]
    if starts.numel() == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    offset = (frame - shift) // 2
    begin = (starts * shift + offset - pad).clamp(0, samples)
    end = (ends * shift + offset + pad).clamp(0, samples)
    begin[starts == 0] = 0
    end[ends == mask.shape[0]] = samples
    # merge: a run starts a new interval only when it begins after every earlier end
    reach = torch.cummax(end, dim=0).values
    new = torch.ones_like(begin, dtype=torch.bool)
    new[1:] = begin[1:] > reach[:-1]
    group = torch.cumsum(new.long(), 0) - 1
    merged_end = torch.zeros(int(group[-1]) + 1, dtype=torch.long).scatter_reduce(
        0, group, end, reduce="amax", include_self=False)
    return torch.stack([begin[new], merged_end], dim=1)


def speech_intervals(wave: torch.Tensor, s: VadSettings) -> torch.Tensor:
    """``[K, 2]`` sample intervals ``[start, end)`` of speech in ``wave`` ``[S]``, sorted and
    disjoint; empty when no speech is found."""
    levels = frame_levels(wave, s.frame, s.shift)
    mask = smooth(speech_mask(levels, s), s.min_speech, s.min_silence)
    return mask_to_intervals(mask, int(wave.shape[0]), s.shift, s.frame, s.pad)


# ------------------------------------------------------------------ undoing the removal
def _offsets(intervals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each kept interval's length and its first position in the trimmed audio."""
    lengths = intervals[:, 1] - intervals[:, 0]
    return lengths, torch.cumsum(lengths, 0) - lengths


def to_original(intervals: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Trimmed-audio sample positions ``[N]`` -> their positions in the original audio.

    ``intervals`` ``[K, 2]``: the kept ``[start, end)`` intervals, in order. Position
    ``t`` of the trimmed audio is sample ``start_k + (t - offset_k)`` of the original, for
    the interval ``k`` holding it; the trimmed length itself maps to the last kept end.
    """
    positions = torch.as_tensor(positions, dtype=torch.long)
    lengths, offsets = _offsets(intervals)
    k = torch.searchsorted(offsets + lengths, positions, right=True).clamp(max=len(lengths) - 1)
    return intervals[k, 0] + positions - offsets[k]


def to_trimmed(intervals: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Original sample positions ``[N]`` -> positions in the trimmed audio; a position in a
    removed stretch maps to the cut where that stretch was (the inverse of
    :func:`to_original` on kept samples)."""
    positions = torch.as_tensor(positions, dtype=torch.long)
    lengths, offsets = _offsets(intervals)
    k = torch.searchsorted(intervals[:, 0].contiguous(), positions, right=True) - 1
    inside = (positions - intervals[k.clamp(min=0), 0]).clamp(min=0)
    return torch.where(k < 0, torch.zeros_like(positions),
                       offsets[k.clamp(min=0)] + torch.minimum(inside, lengths[k.clamp(min=0)]))
