"""Span masking (wav2vec 2.0 / SpecAugment-style) and the mask embedding.

:func:`sample_span_mask` draws fairseq's ``compute_mask_indices`` masks on the
device, for the whole batch at once, from the global torch RNG of that device
(or a ``generator``): per utterance, ``int(prob * T_valid / length + U[0, 1))``
spans (at least ``min_masks``) start at distinct positions drawn uniformly
from ``[0, T_valid - length)``; overlapping spans merge, spans stop at the
valid length; with ``require_same`` random frames are unmasked until every
row has the batch's minimum count. Differences from fairseq: the
``no_overlap`` placement draws a uniformly random non-overlapping arrangement
(fairseq's sequential placement is broken at its HEAD), and a span set that
covers a whole utterance is not an error.

:class:`SpanMasker` owns the learned ``mask_emb`` ``[D]`` that replaces masked
frames and zeroes masked channels; :class:`~w2v.interfaces.Masker` is the
interface (kind ``masker``, declared by the core).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import attrs
import torch
from torch import Tensor, nn

from w2v.config import choice, field, real, size
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Masker, Signal

Selection = Literal["static", "uniform", "normal", "poisson"]


# --------------------------------------------------------------------------- sampling


def _rand(shape, device, generator) -> Tensor:
    return torch.rand(shape, device=device, generator=generator)


def _keep_random(mask: Tensor, keep: Tensor, generator: torch.Generator | None) -> Tensor:
    """Keep ``keep[b]`` uniformly chosen True entries of each row of ``mask`` ``[B, T]``."""
    keys = _rand(mask.shape, mask.device, generator).masked_fill(~mask, 2.0)
    order = keys.argsort(dim=1)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(mask.shape[1], device=mask.device).expand_as(order))
    return mask & (rank < keep[:, None])


def _span_lengths(num: Tensor, slots: int, length: int, selection: str, other: float,
                  generator) -> Tensor:
    """``[B, slots]`` span lengths, zero for slots at or beyond ``num[b]``."""
    B, device = num.shape[0], num.device
    if selection == "static":
        lens = torch.full((B, slots), length, device=device)
    elif selection == "uniform":      # integers in [other, 2 * length]
        lo = int(other)
        lens = lo + (_rand((B, slots), device, generator) * (2 * length + 1 - lo)).long()
    elif selection == "normal":
        z = torch.randn((B, slots), device=device, generator=generator)
        lens = torch.round(length + other * z).long().clamp(min=1)
    elif selection == "poisson":
        rate = torch.full((B, slots), float(length), device=device)
        lens = torch.round(torch.poisson(rate, generator=generator)).long()
    else:
        raise ConfigError(f"unknown mask selection `{selection}`.",
                          hint="Valid choices: `static`, `uniform`, `normal`, `poisson`.")
    used = torch.arange(slots, device=device)[None] < num[:, None]
    return (lens.clamp(min=0) * used).long()


def _cover(starts: Tensor, lens: Tensor, width: int) -> Tensor:
    """``[B, width]`` True where some span ``[start, start + len)`` covers the step."""
    B = starts.shape[0]
    size = width + 1
    s = starts.clamp(max=width)
    e = (starts + lens).clamp(max=width)
    delta = torch.zeros(B, size, dtype=torch.long, device=starts.device)
    delta.scatter_add_(1, s, (lens > 0).long())
    delta.scatter_add_(1, e, -(lens > 0).long())
    return delta.cumsum(1)[:, :width] > 0


def _overlapping_starts(sz: Tensor, num: Tensor, lens: Tensor, width: int, generator) -> Tensor:
    """fairseq's span starts: ``num`` distinct draws from ``[0, sz - min_len)``."""
    device, slots = sz.device, lens.shape[1]
    big = torch.iinfo(torch.long).max
    min_len = torch.where(lens > 0, lens, big).min(1).values
    min_len = torch.where(num > 0, min_len, torch.zeros_like(min_len))
    min_len = torch.where(sz - min_len <= num, sz - num - 1, min_len)
    high = sz - min_len                                         # >= num + 1
    width = max(width, slots + 1)
    keys = _rand((sz.shape[0], width), device, generator)
    keys = keys.masked_fill(torch.arange(width, device=device)[None] >= high[:, None], 2.0)
    return keys.argsort(dim=1)[:, :slots]


def _separated_starts(sz: Tensor, lens: Tensor, min_space: int, generator) -> tuple[Tensor, Tensor]:
    """Non-overlapping spans at least ``min_space`` apart, uniformly arranged.

    Longest spans are kept first while they fit (as fairseq places them);
    returns ``(starts, lens)`` with dropped spans given length 0.
    """
    B, slots = lens.shape
    device = sz.device
    lens, _ = lens.sort(dim=1, descending=True)
    need = torch.where(lens > 0, lens + min_space, torch.zeros_like(lens)).cumsum(1) - min_space
    lens = torch.where(need <= sz[:, None], lens, torch.zeros_like(lens))
    n = (lens > 0).sum(1)
    used = (torch.where(lens > 0, lens + min_space, torch.zeros_like(lens)).sum(1)
            - min_space * (n > 0).long())
    free = (sz - used).clamp(min=0)
    # random left-to-right order of the kept spans
    keys = _rand((B, slots), device, generator).masked_fill(lens == 0, 2.0)
    lens = lens.gather(1, keys.argsort(dim=1))
    # gaps: n sorted distinct picks c_i from [0, free + n); gap before span i is c_i - i
    width = int((free + n).max()) if B else 0
    picks = _rand((B, max(width, 1)), device, generator)
    picks = picks.masked_fill(torch.arange(max(width, 1), device=device)[None]
                              >= (free + n)[:, None], 2.0)
    c = picks.argsort(dim=1)[:, :slots]
    slot = torch.arange(slots, device=device)[None]
    c = torch.where(slot < n[:, None], c, torch.full_like(c, 1 << 40)).sort(dim=1).values
    before = torch.cumsum(lens + min_space, 1) - (lens + min_space)        # exclusive prefix
    starts = torch.where(slot < n[:, None], c - slot + before, torch.zeros_like(c))
    return starts, lens


def sample_span_mask(batch: int, width: int, lengths: Tensor | None = None, *, prob: float,
                     length: int, selection: str = "static", other: float = 0.0,
                     min_masks: int = 0, no_overlap: bool = False, min_space: int = 0,
                     require_same: bool = True, dropout: float = 0.0,
                     device: torch.device | str | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """A ``[batch, width]`` bool span mask with fairseq ``compute_mask_indices`` semantics.

    Args:
        lengths: ``[B]`` valid steps per row (spans stay inside), or None for all.
        prob: fairseq ``mask_prob``; spans per row = ``int(prob * T / length + U[0,1))``.
        length: span length (the mean for non-static selections).
        selection: ``static`` | ``uniform`` (in [other, 2*length]) | ``normal``
            (std ``other``) | ``poisson``.
        min_masks: at least this many spans per row.
        no_overlap / min_space: place spans apart by at least ``min_space`` steps.
        require_same: unmask random steps until every row has the batch minimum.
        dropout: unmask this fraction (rounded) of each row's masked steps.
    """
    device = torch.device(device) if device is not None else (
        lengths.device if lengths is not None else torch.device("cpu"))
    if batch == 0 or width == 0 or prob <= 0:
        return torch.zeros(batch, width, dtype=torch.bool, device=device)
    sz = (lengths.to(device=device, dtype=torch.long).clamp(0, width) if lengths is not None
          else torch.full((batch,), width, dtype=torch.long, device=device))
    u = _rand((batch,), device, generator)
    num = torch.floor(prob * sz.double() / length + u.double()).long().clamp(min=min_masks)
    slots = max(min_masks, int(prob * width / length + 1))
    lens = _span_lengths(num, slots, length, selection, other, generator)
    # a row whose spans all have length 0 gets one span of min(length, T - 1) (fairseq)
    if selection != "static":
        empty = (lens.sum(1) == 0) & (num > 0)
        first = torch.zeros_like(lens)
        first[:, 0] = torch.minimum(torch.full_like(sz, length), sz - 1).clamp(min=0)
        lens = torch.where(empty[:, None], first, lens)
        num = torch.where(empty, torch.ones_like(num), num)
    lens = lens.clamp(max=width)

    if no_overlap:
        starts, lens = _separated_starts(sz, lens, min_space, generator)
    else:
        starts = _overlapping_starts(sz, num, lens, width, generator)
    mask = _cover(starts, lens, width)
    mask &= torch.arange(width, device=device)[None] < sz[:, None]

    if require_same:
        counts = mask.sum(1)
        mask = _keep_random(mask, counts.min().expand(batch), generator)
    if dropout > 0:
        counts = mask.sum(1)
        holes = torch.round(counts.double() * dropout).long()
        mask = _keep_random(mask, counts - holes, generator)
    return mask


# --------------------------------------------------------------------------- components


@attrs.define(kw_only=True)
class SpanMaskerConfig:
    mask_prob: float = real(0.65, 0.0, 1.0, "fairseq mask_prob: spans per utterance = "
                                            "mask_prob * T / mask_length (paper p = this / length)")
    mask_length: int = size(10, 1, 10_000, "span length in frames")
    mask_selection: Selection = choice("static", "span lengths: static, uniform, normal, poisson")
    mask_other: float = real(0.0, 0.0, None, "uniform: minimum length; normal: std")
    no_mask_overlap: bool = field(False, "place spans apart instead of letting them overlap")
    mask_min_space: int = size(1, 0, 10_000, "with no_mask_overlap: minimum gap between spans")
    min_masks: int = size(2, 0, 10_000, "at least this many spans per utterance")
    require_same_masks: bool = field(True, "unmask random frames so every utterance of a batch "
                                           "has the same masked count (needed for batched negatives)")
    mask_dropout: float = real(0.0, 0.0, 1.0, "unmask this fraction of each utterance's masked frames")
    mask_channel_prob: float = real(0.0, 0.0, 1.0, "channel masking: mask_prob over channels (0 = off)")
    mask_channel_length: int = size(10, 1, 10_000, "channel span length")
    mask_channel_selection: Selection = choice("static", "channel span lengths")
    mask_channel_other: float = real(0.0, 0.0, None, "as mask_other, for channels")
    no_mask_channel_overlap: bool = field(False, "place channel spans apart")
    mask_channel_min_space: int = size(1, 0, 10_000, "minimum gap between channel spans")
    mask_channel_before: bool = field(False, "zero channels before writing the mask embedding")


class SpanMasker(Masker):
    """fairseq wav2vec 2.0 span masking with a learned mask embedding ``mask_emb`` ``[D]``.

    ``D`` is the width of what is masked (the aggregator input, after the
    projection). Channel masks cover whole utterances and zero the channels.
    """

    Config = SpanMaskerConfig

    def __init__(self, config: SpanMaskerConfig, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.config = config
        self.mask_emb = nn.Parameter(torch.empty(dim).uniform_())

    @classmethod
    def from_config(cls, config: SpanMaskerConfig, upstream: Signal | None = None,
                    **context) -> "SpanMasker":
        if upstream is None:
            raise ConfigError("the span masker needs the signal it masks (its width).")
        return cls(config, upstream.dim)

    def settings(self, overrides: Mapping[str, Any]) -> SpanMaskerConfig:
        """The config with ``overrides`` (field names of :class:`SpanMaskerConfig`) applied."""
        if not overrides:
            return self.config
        self.check_settings(overrides)
        return attrs.evolve(self.config, **overrides)

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        known = attrs.fields_dict(SpanMaskerConfig)
        unknown = [k for k in settings if k not in known]
        if unknown:
            raise FitError(f"the span masker has no {', '.join(unknown)} setting to override.",
                           hint=f"Its settings: {', '.join(known)}.")

    def sample(self, batch: int, time: int, lengths: Tensor | None = None,
               device: torch.device | str | None = None,
               generator: torch.Generator | None = None, **settings: Any) -> Tensor:
        c = self.settings(settings)
        device = device if device is not None else self.mask_emb.device
        return sample_span_mask(
            batch, time, lengths, prob=c.mask_prob, length=c.mask_length,
            selection=c.mask_selection, other=c.mask_other, min_masks=c.min_masks,
            no_overlap=c.no_mask_overlap, min_space=c.mask_min_space,
            require_same=c.require_same_masks, dropout=c.mask_dropout, device=device,
            generator=generator)

    def sample_channels(self, batch: int, device: torch.device | str | None = None,
                        generator: torch.Generator | None = None, **settings: Any
                        ) -> Tensor | None:
        c = self.settings(settings)
        if c.mask_channel_prob <= 0:
            return None
        device = device if device is not None else self.mask_emb.device
        return sample_span_mask(
            batch, self.dim, None, prob=c.mask_channel_prob, length=c.mask_channel_length,
            selection=c.mask_channel_selection, other=c.mask_channel_other, min_masks=0,
            no_overlap=c.no_mask_channel_overlap, min_space=c.mask_channel_min_space,
            require_same=True, device=device, generator=generator)

    def describe_lines(self, local: Signal) -> list[str]:
        """``--dry-run`` lines: the span length in time."""
        n = self.config.mask_length
        return [f"mask_length {n} frames = {local.frames_to_ms(n):g} ms at "
                f"{local.frame_rate:g} Hz"]

    def apply(self, x: Tensor, mask: Tensor | None, channel_mask: Tensor | None = None) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected features of width {self.dim}, found {x.shape[-1]}")
        if channel_mask is not None and self.config.mask_channel_before:
            x = x.masked_fill(channel_mask[:, None, :], 0.0)
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        if channel_mask is not None and not self.config.mask_channel_before:
            x = x.masked_fill(channel_mask[:, None, :], 0.0)
        return x
