"""CTC fine-tuning (fairseq ``wav2vec_ctc`` model + ``ctc`` criterion).

One step: the model's forward (in training with ``apply_mask``: masked by the
model's masker) gives ``model.head`` logits; padded frames are forced to blank,
log-softmax in fp32, ``F.ctc_loss(reduction="sum")``. The loss is a sum over target tokens
and ``sample_size`` is their number (fairseq with ``sentence_avg=False``), or with
``sentence_avg`` the number of utterances (fairseq's fine-tuning recipes).
On validation batches (model in eval mode) greedy decoding gives fairseq's
unit and word error counts (``n_unit_errors``/``n_units``,
``n_word_errors``/``n_words``), which the trainer sums across batches;
:meth:`CTCObjective.finalize_stats` turns the sums into ``uer``/``wer`` in
percent (each batch also reports its own ``uer``/``wer``).

Not done here: freezing everything but the head for ``freeze_finetune_updates``
and ``feature_grad_mult: 0`` (a frozen conv encoder) belong to the trainer and
the encoder. Masking settings for fine-tuning (fairseq recipes use
``mask_prob`` 0.5-0.75, ``mask_channel_prob`` 0.1-0.5 with
``mask_channel_length`` 64) live on ``model.masker``; the ``mask_*`` fields
below are passed to the model's forward to override them when set (the masker's
own config never changes).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import field, real, size
from w2v.data.dictionary import Dictionary, as_dictionary
from w2v.errors import FitError
from w2v.interfaces import Batch, Head, ModelOutput, Objective, ObjectiveOutput, Signal

from .decoders import greedy_tokens
from .head import ctc_log_probs
from .metrics import token_errors, word_edits

_MASKER_OVERRIDES = ("mask_prob", "mask_length", "mask_channel_prob", "mask_channel_length")
_RATES = {"uer": ("n_unit_errors", "n_units"), "wer": ("n_word_errors", "n_words")}


@attrs.define(kw_only=True)
class CTCConfig:
    apply_mask: bool = field(True, "mask time steps in training with the model's masker and "
                                   "mask embedding (fairseq apply_mask)")
    mask_prob: float | None = real(None, 0.0, 1.0, "override the masker's mask_prob while "
                                                   "fine-tuning (null: keep it)")
    mask_length: int | None = size(None, 1, 10_000, "override the masker's mask_length")
    mask_channel_prob: float | None = real(None, 0.0, 1.0, "override the masker's "
                                                           "mask_channel_prob")
    mask_channel_length: int | None = size(None, 1, 10_000, "override the masker's "
                                                            "mask_channel_length")
    zero_infinity: bool = field(True, "zero losses of utterances too short for their labels")
    wer_valid: bool = field(True, "greedy-decode validation batches and report unit and word "
                                  "error counts (uer, wer)")
    sentence_avg: bool = field(False, "normalise the summed loss by the number of utterances "
                                      "instead of target tokens (fairseq sentence_avg; its "
                                      "fine-tuning recipes set it)")


class CTCObjective(Objective):
    """CTC loss over ``model.head`` logits (fairseq ``ctc`` criterion); any
    :class:`~w2v.interfaces.Head` of the dictionary's size fits.

    Build context: ``dictionary`` (a :class:`~w2v.data.dictionary.Dictionary`
    or a path); without it the blank is 0 and word errors are not computed.
    """

    Config = CTCConfig

    def __init__(self, config: CTCConfig, dictionary: Dictionary | None = None) -> None:
        super().__init__()
        self.config = config
        self.dictionary = dictionary
        self.blank = dictionary.blank if dictionary is not None else 0

    @classmethod
    def from_config(cls, config: CTCConfig, upstream: Signal | None = None, **context: Any
                    ) -> "CTCObjective":
        return cls(config, as_dictionary(context.get("dictionary")))

    # ------------------------------------------------------------------ checks
    def check_model(self, model: nn.Module) -> None:
        head = getattr(model, "head", None)
        if not isinstance(head, Head):
            raise FitError(
                "the ctc objective needs a model with an output head (`model.head`), found "
                f"{type(head).__name__ if head is not None else 'none'}.",
                hint="Add `model.head: {name: ctc}` to the fine-tuning stage.")
        if self.dictionary is not None and head.vocab_size != len(self.dictionary):
            raise FitError(f"the model's head has {head.vocab_size} outputs but the "
                           f"dictionary has {len(self.dictionary)} symbols.",
                           hint="Use the dictionary the head was trained with, or attach a new "
                                "head of the dictionary's size.")
        if getattr(head, "blank", self.blank) != self.blank:
            raise FitError(f"the CTC head's blank id is {head.blank} but the dictionary's is "
                           f"{self.blank}.")
        if self.config.apply_mask:
            masker = getattr(model, "masker", None)
            if masker is None:
                raise FitError("the ctc objective masks time steps (apply_mask) but the model "
                               "has no masker.", hint="Set `objective.apply_mask: false`, or give "
                                                      "the model a masker (model.masker).")
            masker.check_settings(self.mask_settings())

    def mask_settings(self) -> dict[str, Any]:
        """The ``mask_*`` overrides that are set, as masker settings for the forward."""
        return {k: getattr(self.config, k) for k in _MASKER_OVERRIDES
                if getattr(self.config, k) is not None}

    def request(self, batch: Batch, model: nn.Module, step: int) -> dict[str, Any]:
        """In training with ``apply_mask``: a mask from the model's masker, with the
        ``mask_*`` overrides; otherwise none."""
        if not (self.config.apply_mask and model.training):
            return {"mask": False}
        return {"mask": self.mask_settings() or True}

    def valid_metrics(self) -> Sequence[str]:
        return ("loss", "wer", "uer")

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        if batch.targets is None:
            raise FitError("the ctc objective needs labels (`data.labels: ltr`).")
        log_probs, frames = self.log_probs(output)
        targets, target_lengths = self._targets(batch)
        with torch.backends.cudnn.flags(enabled=False):
            loss = F.ctc_loss(log_probs.transpose(0, 1), targets, frames, target_lengths,
                              blank=self.blank, reduction="sum",
                              zero_infinity=self.config.zero_infinity)
        n_tokens = target_lengths.sum()
        sample_size = batch.size if self.config.sentence_avg else n_tokens
        stats: dict[str, Any] = {"n_tokens": n_tokens.detach(), "n_sentences": batch.size}
        if self.config.wer_valid and not self.training:
            stats.update(self._error_counts(log_probs.detach(), frames, batch.targets,
                                            target_lengths))
        return ObjectiveOutput(loss=loss, sample_size=sample_size, stats=stats)

    def log_probs(self, output: ModelOutput) -> tuple[Tensor, Tensor]:
        """``(log_probs [B, T, V] float32, frames [B])`` of the model's head logits."""
        return ctc_log_probs(output, self.blank)

    def _targets(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Flat target ids (padding excluded) and ``[B]`` target lengths."""
        t = batch.targets
        if batch.target_lengths is not None:
            lengths = batch.target_lengths.to(t.device)
            keep = torch.arange(t.shape[1], device=t.device)[None] < lengths[:, None]
        else:
            pad = self.dictionary.pad if self.dictionary is not None else 1
            eos = self.dictionary.eos if self.dictionary is not None else 2
            keep = (t != pad) & (t != eos)
            lengths = keep.sum(dim=1)
        return t[keep], lengths

    @torch.no_grad()
    def _error_counts(self, log_probs: Tensor, frames: Tensor, targets: Tensor,
                      target_lengths: Tensor) -> dict[str, float]:
        """fairseq's validation counts: unit edits over label ids, word edits over words."""
        hyps, _ = greedy_tokens(log_probs, frames, self.blank)
        refs = [row[:n] for row, n in zip(targets.tolist(), target_lengths.tolist())]
        c_errors, c_total = token_errors(refs, hyps), sum(len(r) for r in refs)
        stats = {"n_unit_errors": float(c_errors), "n_units": float(c_total)}
        if self.dictionary is not None:
            w_errors, w_total = word_edits([self.dictionary.words(r) for r in refs],
                                           [self.dictionary.words(h) for h in hyps])
            stats.update({"n_word_errors": float(w_errors), "n_words": float(w_total)})
        return self.finalize_stats(stats)

    @staticmethod
    def finalize_stats(stats: Mapping[str, float]) -> dict[str, float]:
        """``stats`` with ``uer``/``wer`` (percent) recomputed from the summed counts."""
        out = dict(stats)
        for rate, (errors, total) in _RATES.items():
            if errors in out and total in out:
                out[rate] = 100.0 * out[errors] / max(out[total], 1.0)
        return out
