"""What a model accepts as input: a tensor batch, one utterance, audio files, or a list.

:func:`as_source` turns any of them into the padded ``[B, ...]`` batch and ``[B]``
lengths the encoder reads, or raises a :class:`~w2v.errors.ConfigError` that names
the expected and the found shape.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from .errors import ConfigError, DataError

#: Dimensions of one utterance, per input kind (the batch adds one in front).
_UTTERANCE_DIMS = {"waveform": 1, "tokens": 1, "features": 2}
_SHAPES = {"waveform": "[S]", "tokens": "[T]", "features": "[T, C]"}


def _read(path: str | os.PathLike, sample_rate: int) -> Tensor:
    from .data.audio import read_audio
    from .data.skips import BadInput

    try:
        return read_audio(os.fspath(path), sample_rate=sample_rate)[0]
    except BadInput as bad:
        raise DataError(f"cannot read {bad.describe()}", hint="Pass audio files that "
                        "soundfile reads (wav, flac, ogg, ...).") from None


def _expected(kind: str) -> str:
    one = _SHAPES[kind]
    batch = "[B, " + one[1:]
    files = ", an audio file path" if kind == "waveform" else ""
    return f"one utterance {one}, a batch {batch}{files} or a list of these"


def _utterance(item: Any, kind: str, sample_rate: int) -> Tensor:
    if isinstance(item, (str, os.PathLike)):
        if kind != "waveform":
            raise ConfigError(f"this model reads {kind}, not audio files: found the path "
                              f"`{os.fspath(item)}`.", hint=f"Pass {_expected(kind)}.")
        return _read(item, sample_rate)
    t = torch.as_tensor(item)
    if kind != "tokens":
        t = t.float()
    if t.dim() != _UTTERANCE_DIMS[kind]:
        raise ConfigError(f"expected each list item to be one utterance {_SHAPES[kind]} "
                          f"({kind}), found shape {list(t.shape)}.",
                          hint=f"Pass {_expected(kind)}.")
    return t


def as_source(source: Any, lengths: Tensor | None, *, kind: str, sample_rate: int,
              device: torch.device | None = None) -> tuple[Tensor, Tensor | None]:
    """``(source [B, ...], lengths [B] or None)`` from what a user passed.

    Args:
        source: a batch tensor (``[B, S]`` waveforms, ``[B, T]`` tokens, ``[B, T, C]``
            features: returned as is, with ``lengths``), one utterance (one dimension
            less: a batch of one), an audio file path (waveform models, read and
            resampled to ``sample_rate``), or a list of utterances and paths (padded
            with zeros; ``lengths`` says where each ends).
        kind: what the encoder consumes (``waveform``, ``tokens``, ``features``).
        device: where built batches go (tensors given as a batch stay where they are).
    """
    dims = _UTTERANCE_DIMS.get(kind, 1)
    if hasattr(source, "__array__") and not isinstance(source, Tensor):   # numpy
        source = torch.as_tensor(source)
    if isinstance(source, Tensor) and source.dim() == dims + 1:
        return source, lengths
    if isinstance(source, (list, tuple)) or isinstance(source, (str, os.PathLike)) or \
            (isinstance(source, Tensor) and source.dim() == dims):
        if lengths is not None:
            raise ConfigError("`lengths` goes with a padded batch tensor; a list or one "
                              "utterance carries its own length.", hint="Leave `lengths` out.")
        items = list(source) if isinstance(source, (list, tuple)) else [source]
        if not items:
            raise ConfigError(f"expected {_expected(kind)}, found an empty list.")
        waves = [_utterance(item, kind, sample_rate) for item in items]
        sizes = torch.tensor([w.shape[0] for w in waves])
        batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        if device is not None:
            batch, sizes = batch.to(device), sizes.to(device)
        same = bool((sizes == sizes[0]).all())
        return batch, (None if same else sizes)
    found = f"shape {list(source.shape)}" if hasattr(source, "shape") else type(source).__name__
    raise ConfigError(f"expected {_expected(kind)} ({kind}), found {found}.",
                      hint="Add or remove a batch dimension (`x[None]`, `x[0]`).")
