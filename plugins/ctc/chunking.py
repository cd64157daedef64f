"""CTC emissions of whole or chunked audio: what transcription and evaluation decode.

Long audio is cut into chunks of ``chunk_seconds`` whose *emissions* are joined
into one sequence before decoding, so a word cut by a chunk boundary is still
decoded once. Chunk boundaries sit on frame boundaries (multiples of the
encoder stride), and each chunk runs with ``context_seconds`` of extra audio
on both sides whose frames are then dropped:

* a model whose every frame sees a bounded window (a conv encoder in
  ``layer_norm`` mode and a conv context network with per-frame norms, say)
  gives exactly the unchunked emissions once the context covers that window;
* a Transformer sees the whole input, so each chunk loses whatever lies beyond
  its context, and ``group_norm`` encoders (BASE) and models that normalise
  waveforms (LARGE) normalise each chunk on its own. With the defaults, 30 s
  chunks and 1 s of context, utterances up to 30 s are decoded whole (nearly
  all of LibriSpeech, on which wav2vec 2.0 is fine-tuned); ``chunk_seconds=None``
  decodes every utterance whole.

A forward pass holds only pieces of equal length (no padding), so an
utterance's emissions are the same whether it is transcribed alone or with
others, also for ``group_norm`` encoders whose statistics would include padding.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import attrs
import torch
from torch import Tensor, nn

from w2v.errors import ConfigError, DataError

#: Audio per forward pass when batching equal-length pieces (seconds).
DEFAULT_BATCH_SECONDS = 240.0


# --------------------------------------------------------------------------- chunk plan


@attrs.frozen(kw_only=True)
class Piece:
    """One chunk of an utterance: run samples ``[start, end)`` and keep output frames
    ``[keep_from, keep_to)`` of the piece."""

    start: int
    end: int
    keep_from: int
    keep_to: int
    frames: int         # output frames the piece gives


def chunk_plan(num_samples: int, num_frames: int, *, stride: int, receptive_field: int,
               chunk_frames: int | None, context_frames: int = 0) -> list[Piece]:
    """Cut an utterance of ``num_samples`` (``num_frames`` output frames) into pieces.

    Frame ``t`` of the encoder sees samples ``[t*stride, t*stride + receptive_field)``;
    piece ``i`` owns frames ``[i*chunk_frames, (i+1)*chunk_frames)`` and runs with
    ``context_frames`` more frames of audio on each side (as far as the utterance goes);
    the last piece runs to the end of the audio. One piece when everything fits or
    ``chunk_frames`` is None.
    """
    if chunk_frames is None or num_frames <= chunk_frames:
        return [Piece(start=0, end=num_samples, keep_from=0, keep_to=num_frames,
                      frames=num_frames)]
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, found {chunk_frames}")
    pieces = []
    for first in range(0, num_frames, chunk_frames):
        last = min(first + chunk_frames, num_frames)              # owned frames [first, last)
        run_from = max(0, first - context_frames)
        run_to = min(num_frames, last + context_frames)
        end = num_samples if run_to == num_frames else (run_to - 1) * stride + receptive_field
        pieces.append(Piece(start=run_from * stride, end=end, keep_from=first - run_from,
                            keep_to=last - run_from, frames=run_to - run_from))
    return pieces


# --------------------------------------------------------------------------- inputs


def read_wave(path: str | os.PathLike, sample_rate: int, min_samples: int = 0) -> Tensor:
    """An audio file as a mono float32 ``[S]`` at ``sample_rate`` (an all-zero file is read
    as silence, not refused); a DataError naming the file when it cannot be read or is
    shorter than ``min_samples``."""
    from w2v.data.audio import audio_info, read_audio
    from w2v.data.skips import BadInput

    path = os.fspath(path)
    try:
        return read_audio(path, sample_rate=sample_rate, min_samples=min_samples)[0]
    except BadInput as bad:
        if bad.reason == "silent":
            info = audio_info(path)
            wave = torch.zeros(round(info.frames * sample_rate / info.samplerate))
            if wave.shape[0] >= min_samples:
                return wave
        hint = None if bad.reason in ("too-short", "silent", "non-finite", "out-of-range",
                                      "cancelled") else \
            "Pass audio files that soundfile reads (wav, flac, ogg, ...)."
        raise DataError(f"cannot transcribe {bad.describe()}", hint=hint) from None


def as_waves(waves: Any, sample_rate: int, *, input_rate: int | None = None,
             min_samples: int = 0) -> list[Tensor]:
    """One mono float32 ``[S]`` tensor per utterance.

    ``waves``: a 1-D tensor/array (one utterance), a 2-D ``[B, S]`` one (B utterances of
    equal length), an audio file path, or a list of any of these. Files are read and
    resampled to ``sample_rate`` (shorter than ``min_samples``: a DataError naming the file);
    tensors are taken to be at ``input_rate`` (default ``sample_rate``) and resampled when it
    differs.
    """
    items = list(waves) if isinstance(waves, (list, tuple)) else [waves]
    out: list[Tensor] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            out.append(read_wave(item, sample_rate, min_samples))
            continue
        t = torch.as_tensor(item)
        if not t.is_floating_point():
            raise DataError(f"expected a float waveform (samples in [-1, 1]), found dtype "
                            f"{t.dtype}.", hint="Divide 16-bit samples by 32768.")
        if t.dim() not in (1, 2):
            raise DataError(f"expected a waveform [S] or a batch [B, S], found shape "
                            f"{list(t.shape)}.")
        t = t.detach().float().cpu()
        if input_rate is not None and input_rate != sample_rate:
            import torchaudio.functional as AF

            t = AF.resample(t, input_rate, sample_rate)
        out.extend(t.unbind(0) if t.dim() == 2 else [t])
    return out


def is_single(waves: Any) -> bool:
    """True when ``waves`` is one utterance (a path or a 1-D waveform), not a batch/list."""
    if isinstance(waves, (str, os.PathLike)):
        return True
    if isinstance(waves, (list, tuple)):
        return False
    return getattr(waves, "ndim", 2) == 1


# --------------------------------------------------------------------------- emissions


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def require_ctc_head(model: nn.Module) -> None:
    if getattr(model, "head", None) is None:
        raise ConfigError("the model has no CTC head: only a fine-tuned model can transcribe.",
                          hint="Fine-tune it first (recipes/finetune/), or load a fine-tuned "
                               "checkpoint.")


def chunked_emissions(model: nn.Module, waves: Sequence[Tensor], *,
                      chunk_seconds: float | None = 30.0, context_seconds: float = 1.0,
                      batch_seconds: float = DEFAULT_BATCH_SECONDS) -> list[Tensor]:
    """CTC log-probabilities ``[T_i, V]`` (float32, CPU) of each waveform ``[S_i]``.

    Pieces of equal length run together (at most ``batch_seconds`` of audio per forward
    pass); ``chunk_seconds=None`` runs every utterance whole. See the module docstring for
    what chunking changes.
    """
    from .head import emissions

    require_ctc_head(model)
    if (chunk_seconds is not None and chunk_seconds <= 0) or context_seconds < 0:
        raise ConfigError(f"the chunk length must be positive and the context non-negative, "
                          f"found {chunk_seconds} s and {context_seconds} s.")
    local = model.encoder.produces()
    rate, stride, field = model.sample_rate, local.stride, local.receptive_field
    chunk_frames = None if chunk_seconds is None else max(1, round(chunk_seconds * rate / stride))
    context_frames = math.ceil(context_seconds * rate / stride)
    budget = max(1, int(batch_seconds * rate))
    device = _device(model)

    jobs: dict[int, list[tuple[int, int, Piece]]] = {}     # piece length -> (utt, index, piece)
    plans = []
    for u, wave in enumerate(waves):
        n = int(wave.shape[0])
        if n < field:
            raise DataError(f"utterance {u} is {n} samples long, shorter than the encoder's "
                            f"receptive field ({field} samples at {rate} Hz): it has no frame.")
        frames = int(model.encoder.output_lengths(torch.tensor([n]))[0])
        plan = chunk_plan(n, frames, stride=stride, receptive_field=field,
                          chunk_frames=chunk_frames, context_frames=context_frames)
        plans.append(plan)
        for i, piece in enumerate(plan):
            jobs.setdefault(piece.end - piece.start, []).append((u, i, piece))

    outputs: dict[tuple[int, int], Tensor] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for length, group in jobs.items():
                per_batch = max(1, budget // length)
                for b in range(0, len(group), per_batch):
                    part = group[b:b + per_batch]
                    batch = torch.stack([waves[u][p.start:p.end] for u, _, p in part]).to(device)
                    log_probs, _ = emissions(model, batch)
                    for (u, i, p), lp in zip(part, log_probs):
                        if len(plans[u]) == 1:          # whole utterance: every frame
                            outputs[(u, i)] = lp.float().cpu()
                            continue
                        if lp.shape[0] != p.frames:
                            _frames_do_not_follow_stride(lp.shape[0], p, stride, field)
                        outputs[(u, i)] = lp[p.keep_from:p.keep_to].float().cpu()
    finally:
        model.train(was_training)
    return [torch.cat([outputs[(u, i)] for i in range(len(plan))]) for u, plan in
            enumerate(plans)]


def _frames_do_not_follow_stride(found: int, piece: Piece, stride: int, field: int) -> None:
    raise ConfigError(f"the encoder gave {found} frames for a chunk of {piece.end - piece.start} "
                      f"samples, which does not follow its stated stride ({stride}) and "
                      f"receptive field ({field}): its audio cannot be cut into chunks.",
                      hint="Decode whole files: `--chunk-seconds 0` (chunk_seconds=None).")


__all__ = ["DEFAULT_BATCH_SECONDS", "Piece", "as_waves", "chunk_plan", "chunked_emissions",
           "is_single", "read_wave", "require_ctc_head"]
