"""Conv layer lists ``[[dim, kernel, stride], ...]`` and the wav2vec 1.0 presets."""

from __future__ import annotations

import math
from typing import Sequence

from w2v.errors import ConfigError

ConvLayer = tuple[int, int, int]

#: The paper's encoder: 5 layers, total stride 160 (10 ms), receptive field 465 samples.
ENCODER_BASE: list[ConvLayer] = [(512, 10, 5), (512, 8, 4), (512, 4, 2), (512, 4, 2), (512, 4, 2)]
#: wav2vec large: the base encoder plus two 1x1 layers (the paper's "extra linear transforms").
ENCODER_LARGE: list[ConvLayer] = ENCODER_BASE + [(512, 1, 1)] * 2
#: vq-wav2vec (and fairseq's ``conv_feature_layers`` default): three 1x1 layers.
ENCODER_VQ: list[ConvLayer] = ENCODER_BASE + [(512, 1, 1)] * 3

#: The paper's base context network: 9 layers of kernel 3 (receptive field 210 ms).
AGGREGATOR_BASE: list[ConvLayer] = [(512, 3, 1)] * 9
#: wav2vec large context network: kernels 2..13 (receptive field 810 ms).
AGGREGATOR_LARGE: list[ConvLayer] = [(512, k, 1) for k in range(2, 14)]

ENCODER_PRESETS = {"base": ENCODER_BASE, "large": ENCODER_LARGE, "vq_wav2vec": ENCODER_VQ}
AGGREGATOR_PRESETS = {"base": AGGREGATOR_BASE, "large": AGGREGATOR_LARGE}

MAX_LAYERS = 64
MAX_DIM = 8192
MAX_KERNEL = 1024


def resolve_layers(preset: str | None, layers: Sequence[Sequence[int]] | None,
                   presets: dict[str, list[ConvLayer]], *, stride_one: bool = False
                   ) -> list[ConvLayer]:
    """The layer list a config asks for: ``layers`` if given, else ``preset`` (default base).

    Raises ConfigError (at key ``layers``) for both given, an empty list, or a
    value out of bounds.
    """
    if preset is not None and layers is not None:
        raise ConfigError("give either `preset` or `layers`, not both.", key="layers",
                          hint=f"Presets: {', '.join(presets)}; `layers` is a list of "
                               "[dim, kernel, stride].")
    chosen = [tuple(int(v) for v in layer) for layer in layers] if layers is not None \
        else list(presets[preset or "base"])
    if not 1 <= len(chosen) <= MAX_LAYERS:
        raise ConfigError(f"expected 1 to {MAX_LAYERS} layers, found {len(chosen)}.", key="layers")
    for i, (dim, kernel, stride) in enumerate(chosen):
        if not (1 <= dim <= MAX_DIM and 1 <= kernel <= MAX_KERNEL and 1 <= stride <= MAX_KERNEL):
            raise ConfigError(
                f"layer {i} is [{dim}, {kernel}, {stride}]; expected dim in 1..{MAX_DIM}, kernel "
                f"and stride in 1..{MAX_KERNEL}.", key=f"layers.{i}")
        if stride_one and stride != 1:
            raise ConfigError(f"layer {i} has stride {stride}; the causal conv aggregator "
                              "supports stride 1 only.", key=f"layers.{i}")
    return chosen  # type: ignore[return-value]


def receptive_field(layers: Sequence[ConvLayer]) -> tuple[int, int]:
    """``(receptive field, total stride)`` of a stack of valid convolutions, in input steps."""
    rf, jump = 1, 1
    for _, kernel, stride in layers:
        rf += (kernel - 1) * jump
        jump *= stride
    return rf, jump


def prediction_offset(receptive_field: int, stride: int) -> int:
    """wav2vec 1.0's first prediction target: ``ceil(receptive_field / stride)`` frames ahead,
    the first frame whose receptive field does not overlap frame t's (3 for the base encoder)."""
    return math.ceil(receptive_field / stride)
