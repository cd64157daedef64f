"""The wav2vec-U adversarial objective (fairseq ``Wav2vec_U`` + ``model`` criterion).

Updates alternate: even updates train the generator (the model's head), odd ones
the discriminator (owned here: a loss-time part). Per update, on generator
logits ``[B, T, V]`` over the phone dictionary and a batch of unpaired phone
sequences ``[B', L]``:

* segment: JOIN merges runs of equal argmax (a random frame per run in training);
* generated distributions = softmax of the segment logits; real = one-hot text;
* discriminator update: ``BCE(D(generated), 1) + BCE(D(real), 0)`` + gradient penalty;
* generator update: ``BCE(D(generated), 0)`` + code penalty + smoothness penalty
  (+ wav2vec-U 2.0's auxiliary loss: the residual branch predicts k-means targets).

Each term is a sum over utterances (the weighted penalties are multiplied by B),
so ``sample_size`` is B, as in fairseq. Label smoothing and the Gumbel variant of
fairseq's model are not implemented (both are off in the paper's configs).
"""

from __future__ import annotations

from typing import Any, Iterator, Literal, Mapping

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import choice, field, real, size
from w2v.errors import DataError, FitError
from w2v.interfaces import Batch, Head, ModelOutput, Objective, ObjectiveOutput, Signal
from w2v.plugin_manager import component_name

from .discriminator import Discriminator, DiscriminatorConfig
from .penalties import code_penalty, gradient_penalty, perplexities, smoothness_penalty
from .segmentation import join_segments


@attrs.define(kw_only=True)
class AdversarialConfig:
    discriminator: DiscriminatorConfig = field(factory=DiscriminatorConfig,
                                               help="the discriminator's conv stack")
    segmentation: Literal["join", "none"] = choice(
        "join", "`join` merges runs of equal predictions (the paper); `none` scores every frame")
    code_penalty: float = real(4.0, 0.0, None, "weight of the phone-diversity penalty "
                                                "(w2vu 4, w2vu2 3)")
    gradient_penalty: float = real(1.5, 0.0, None, "weight of the discriminator's gradient "
                                                    "penalty (w2vu 1.5, w2vu2 1.0)")
    smoothness_weight: float = real(0.5, 0.0, None, "weight of the smoothness penalty "
                                                     "(w2vu 0.5, w2vu2 1.5)")
    mmi_weight: float = real(0.0, 0.0, None, "weight of the auxiliary loss on k-means targets "
                                              "(w2vu2 0.5; needs `aux_targets` in the batch)")
    target_dim: int = size(64, 1, 1 << 16, "k-means clusters of the auxiliary targets")
    target_downsample_rate: int = size(2, 1, 64, "every n-th auxiliary target frame is used")
    fairseq_compat: bool | None = field(None, "count padded segments in the prob perplexity of "
                                              "the code penalty, as fairseq does (null: the "
                                              "recipe's top-level `fairseq_compat`)")


def one_hot_text(tokens: Tensor, vocab_size: int, dtype: torch.dtype) -> Tensor:
    """Phone ids ``[B, L]`` -> one-hot ``[B, L, V]``."""
    return F.one_hot(tokens.long().clamp(min=0), vocab_size).to(dtype)


class AdversarialObjective(Objective):
    """Scores a generator against unpaired text; owns the discriminator (and the v2
    auxiliary decoder).

    Batches carry the unpaired text beside the features: ``batch.extra["text"]``
    ``[B', L]`` phone ids (padding: the dictionary's pad id) with
    ``batch.extra["text_lengths"]`` ``[B']``, and for the auxiliary loss
    ``batch.extra["aux_targets"]`` ``[B, T]`` (-1 = none).

    Args:
        config: the objective's settings.
        vocab_size: V, the phone dictionary's size (the generator's output width).
        input_dim: C, the generator's input width (for the auxiliary decoder).
    """

    Config = AdversarialConfig
    higher_is_better = ()
    no_smoke_reason = "needs unpaired text beside the features and a model without a context " \
                      "network; tests/wav2vec_u exercise it"

    def __init__(self, config: AdversarialConfig, vocab_size: int, input_dim: int) -> None:
        super().__init__()
        self.config = config
        self.vocab_size = vocab_size
        self.discriminator = Discriminator(config.discriminator, vocab_size)
        self.aux_decoder = nn.Linear(input_dim, config.target_dim) if config.mmi_weight > 0 \
            else None
        self._step = 0

    @classmethod
    def from_config(cls, config: AdversarialConfig, upstream: Signal | None = None,
                    **context: Any) -> "AdversarialObjective":
        model = context.get("model")
        head = getattr(model, "head", None)
        if not isinstance(head, Head):
            raise FitError("the wav2vec_u objective trains a generator head, but the model has "
                           "no `model.head`.",
                           hint="Add `model.head: {name: wav2vec_u_generator}`.")
        return cls(config, head.vocab_size, getattr(head, "input_dim", upstream.dim if upstream
                                                    else 1))

    def check_model(self, model: nn.Module) -> None:
        if getattr(model, "aggregator", None) is not None:
            raise FitError("the wav2vec_u objective trains the generator on segment features "
                           "directly, but the model has a context network "
                           f"({component_name('aggregator', model.aggregator)}).",
                           hint="Set `model.aggregator: null`.")

    def request(self, batch: Batch, model: nn.Module, step: int) -> dict[str, Any]:
        self._step = step
        return {"mask": False, "targets": "none"}

    def valid_metrics(self):
        return ("loss",)

    def divergence_detector(self, window: int, factor: float) -> None:
        """None: adversarial losses swing by design (a discriminator that wins for a while
        sends the generator's loss up tenfold), so no loss-level divergence check."""
        return None

    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        if output.logits is None:
            raise FitError("the wav2vec_u objective needs the generator's logits (a model head).")
        if "text" not in batch.extra:
            raise DataError("the wav2vec_u objective needs unpaired text beside the audio "
                            "features (`batch.extra['text']`).",
                            hint="Train it with the `train_gan` stage, whose data has a "
                                 "`sources: {text: {name: units, ...}}` entry.")
        return self.score(output.logits, output.logit_lengths, batch.extra["text"],
                          batch.extra["text_lengths"], self._step,
                          residual=output.head_extra.get("residual"),
                          aux_targets=batch.extra.get("aux_targets"))

    # ---------------------------------------------------------------- composite mode
    def group_for_step(self, step: int) -> str:
        """fairseq: odd updates train the discriminator."""
        return "discriminator" if step % 2 == 1 else "generator"

    def parameter_groups(self, model: nn.Module) -> Mapping[str, Iterator[nn.Parameter]]:
        generator = [p for p in model.parameters() if p.requires_grad]
        if self.aux_decoder is not None:
            generator += list(self.aux_decoder.parameters())
        return {"generator": iter(generator), "discriminator": self.discriminator.parameters()}

    # ---------------------------------------------------------------- scoring
    def score(self, logits: Tensor, lengths: Tensor | None, text: Tensor, text_lengths: Tensor,
              step: int, *, residual: Tensor | None = None,
              aux_targets: Tensor | None = None) -> ObjectiveOutput:
        """Losses of one update.

        Args:
            logits: ``[B, T, V]`` generator logits; ``lengths`` ``[B]`` valid frames.
            text: ``[B', L]`` phone ids of unpaired sentences, ``text_lengths`` ``[B']``.
            step: the update number (picks generator or discriminator).
            residual: ``[B, T0, C]`` the generator's residual branch (v2 auxiliary loss).
            aux_targets: ``[B, T0]`` k-means ids (-1 = none) for the auxiliary loss.
        """
        cfg = self.config
        b = logits.shape[0]
        if lengths is None:
            lengths = torch.full((b,), logits.shape[1], dtype=torch.long, device=logits.device)
        if cfg.segmentation == "join":
            logits, lengths = join_segments(logits, lengths, random_frame=self.training)
        code_ppl, prob_ppl = perplexities(logits, lengths, valid_only=not cfg.fairseq_compat)
        generated = logits.float().softmax(-1)
        real_x = one_hot_text(text, self.vocab_size, generated.dtype)
        stats: dict[str, Any] = {"code_ppl": code_ppl.detach(), "prob_ppl": prob_ppl.detach()}
        d_step = self.group_for_step(step) == "discriminator"
        if d_step:
            fake = generated.detach()
            fake_y = self.discriminator(fake, lengths)
            real_y = self.discriminator(real_x, text_lengths)
            loss_fake = F.binary_cross_entropy_with_logits(fake_y, torch.ones_like(fake_y),
                                                           reduction="sum")
            loss_real = F.binary_cross_entropy_with_logits(real_y, torch.zeros_like(real_y),
                                                           reduction="sum")
            loss = loss_fake + loss_real
            stats.update(dense_d=loss_fake.detach(), token_d=loss_real.detach(),
                         accuracy_dense=(fake_y > 0).float().mean(),
                         accuracy_token=(real_y < 0).float().mean())
            if self.training and cfg.gradient_penalty > 0:
                gp = gradient_penalty(self.discriminator, real_x, fake) * cfg.gradient_penalty
                loss = loss + gp
                stats["grad_pen"] = gp.detach()
        else:
            fake_y = self.discriminator(generated, lengths)
            loss = F.binary_cross_entropy_with_logits(fake_y, torch.zeros_like(fake_y),
                                                      reduction="sum")
            stats["dense_g"] = loss.detach()
            if cfg.code_penalty > 0:
                cp = code_penalty(prob_ppl, self.vocab_size) * b * cfg.code_penalty
                loss = loss + cp
                stats["code_pen"] = cp.detach()
            if cfg.smoothness_weight > 0:
                sm = smoothness_penalty(logits, lengths) * b * cfg.smoothness_weight
                loss = loss + sm
                stats["smoothness"] = sm.detach()
            if self.aux_decoder is not None and residual is not None and aux_targets is not None:
                mmi = self._auxiliary(residual, aux_targets) * b * cfg.mmi_weight
                loss = loss + mmi
                stats["mmi"] = mmi.detach()
        return ObjectiveOutput(loss=loss, sample_size=b, stats=stats,
                               group="discriminator" if d_step else "generator")

    def _auxiliary(self, residual: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of ``aux_decoder(residual)`` against every
        ``target_downsample_rate``-th k-means id (fairseq: ignored ids count as 0)."""
        pred = self.aux_decoder(residual)
        targets = targets[:, ::self.config.target_downsample_rate]
        t = min(targets.shape[1], pred.shape[1])
        ce = F.cross_entropy(pred[:, :t].transpose(1, 2).float(), targets[:, :t].long(),
                             ignore_index=-1, reduction="none")
        return ce.mean()
