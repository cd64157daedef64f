"""Every layer of a frozen model, for every utterance of a split, kept in memory.

The layers are the model's hidden states (:mod:`w2v.hidden_states`): ``input`` (what
enters the context network), then the raw output of each context block ``0 .. L-1``
(block ``k`` is ``w2vrun featurize --layer k``); a model without a context network has
one, its encoder output (``encoder``).

A split becomes a :class:`~w2v.plugins.data.shards.FeatureSet` (the ``features`` data
source's in-memory form) over one ``[frames, L, D]`` fp16 array, so its loaders and
label handling serve the probes unchanged.
"""

from __future__ import annotations

import time
from typing import Sequence

import attrs
import numpy as np
import torch
from torch import Tensor

from w2v.errors import ConfigError
from w2v.plugins.data.shards import FeatureSet

from .corpus import Split


@attrs.frozen(kw_only=True)
class LayerSplit:
    """One split's layers: ``features`` (``[frames, L, D]`` fp16 per row), layer ``names``
    and the frame geometry (``stride`` samples per frame, ``centre`` of frame 0)."""

    features: FeatureSet
    names: list[str]
    stride: int
    centre: int
    seconds: float

    @property
    def frame_rate(self) -> float:
        return self.features.meta["sample_rate"] / self.stride


def layer_names(model) -> list[str]:
    """Names of the layers :func:`layer_stack` returns, in order."""
    return model.hidden_state_names()


@torch.inference_mode()
def layer_stack(model, wave: Tensor) -> Tensor:
    """``wave`` ``[S]`` -> ``[T, L, D]``: the model's hidden states, unmasked."""
    return model.hidden_states(model(wave[None], None, head=False))[0]


def resolve_layer(choice: str, names: Sequence[str]) -> int:
    """``--layer`` (a block number, negative from the end, or ``input``) -> stack index."""
    if names == ["encoder"]:
        return 0
    blocks = [n for n in names if n != "input"]
    if choice == "input":
        if "input" not in names:
            raise ConfigError("`--layer input`: this model's context-network input is not the "
                              "blocks' width, so it is not among the layers.",
                              where="w2vrun benchmark", hint=f"Use a block 0..{len(blocks) - 1}.")
        return 0
    try:
        k = int(choice)
    except ValueError:
        k = None
    if k is None or not -len(blocks) <= k < len(blocks):
        raise ConfigError(f"`--layer {choice}`: the model has {len(blocks)} context blocks.",
                          where="w2vrun benchmark",
                          hint=f"Use 0..{len(blocks) - 1}, -1 for the last, or `input`.")
    return names.index(blocks[k])


def featurize_split(model, split: Split, *, device: str | torch.device = "cpu",
                    progress=None) -> LayerSplit:
    """Every utterance of ``split`` through ``model`` (one at a time, whole utterances)."""
    from w2v.data.audio import read_audio
    from w2v.data.manifest import read_manifest

    manifest = read_manifest(split.manifest)
    names = layer_names(model)
    local = model.local_signal()
    width = model.context_signal().dim
    pieces, counts = [], []
    start = time.perf_counter()
    for row in range(len(manifest)):
        first, stop = manifest.segment(row)
        try:
            wave, _ = read_audio(manifest.audio_path(row), sample_rate=model.sample_rate,
                                 start=first, stop=stop)
        except Exception as exc:  # BadInput: name the file and line
            to_error = getattr(exc, "to_error", None)
            raise (to_error() if to_error else exc) from None
        if wave.shape[0] < local.receptive_field:
            frames = np.zeros((0, len(names), width), dtype=np.float16)
        else:
            frames = layer_stack(model, wave.to(device)).to("cpu", torch.float16).numpy()
        pieces.append(frames)
        counts.append(frames.shape[0])
    array = np.concatenate(pieces) if pieces else np.zeros((0, len(names), width), np.float16)
    lengths = np.array(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
    index = np.stack([np.zeros_like(lengths), starts, lengths], axis=1)
    seconds = float(manifest.sizes.sum()) / model.sample_rate
    if progress is not None:
        progress(f"{split.name}: {len(manifest)} utterances ({seconds / 60:.1f} min), "
                 f"{array.shape[0]} frames x {len(names)} layers x {width} in "
                 f"{time.perf_counter() - start:.0f} s")
    meta = {"sample_rate": model.sample_rate, "stride": local.stride, "dim": width,
            "layers": names}
    features = FeatureSet(name=split.name, arrays=[array], index=index, root=manifest.root,
                          entries=manifest.entries(), meta=meta)
    return LayerSplit(features=features, names=names, stride=local.stride,
                      centre=local.receptive_field // 2, seconds=seconds)


def select(features: FeatureSet, *, rows: np.ndarray | None = None,
           layer: int | None = None) -> FeatureSet:
    """A view of ``features``: only ``rows`` (in that order) and/or one ``layer``
    (kept as ``[frames, 1, D]``); no copy."""
    arrays = features.arrays if layer is None else [a[:, layer:layer + 1] for a in features.arrays]
    if rows is None:
        return attrs.evolve(features, arrays=arrays)
    entries = [features.entries[r] for r in rows] if features.entries else []
    return attrs.evolve(features, arrays=arrays, index=features.index[rows], entries=entries)


def frames_of(features: FeatureSet, layer: int | None = None, *,
              sample: np.ndarray | None = None, chunk: int = 8192, transform=None) -> Tensor:
    """Every frame of a :func:`featurize_split` output, in row order, as float32 ``[N, L, D]``
    (``[N, D]`` for one ``layer``); only the frames ``sample`` when given; ``transform``
    (``[n, L, D] -> [n, D']``) applied chunk by chunk so the float copy of all layers
    never exists at once."""
    if len(features.arrays) != 1:
        raise ValueError("expected the single in-memory array of featurize_split")
    array = features.arrays[0]
    picks = np.arange(array.shape[0]) if sample is None else np.asarray(sample)
    parts = []
    for start in range(0, len(picks), chunk):
        rows = picks[start:start + chunk]
        x = torch.from_numpy(np.ascontiguousarray(array[rows] if layer is None
                                                  else array[rows, layer])).float()
        parts.append(transform(x) if transform is not None else x)
    if parts:
        return torch.cat(parts)
    empty = torch.zeros((0,) + tuple(array.shape[1:]))
    return transform(empty) if transform is not None else (empty if layer is None
                                                             else empty[:, 0])
