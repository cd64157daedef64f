"""The wav2vec-U regularisers, each a scalar before its weight (fairseq ``Wav2vec_U.forward``).

* code penalty: ``(V - prob_perplexity) / V`` of the mean softmax over frames,
  pushing the generator to use the whole phone inventory;
* smoothness: mean squared difference of adjacent segment logits;
* gradient penalty: WGAN-GP style ``(||dD(x_hat)/dx_hat|| - 1)^2`` at random
  interpolations between real text and generated distributions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.interfaces import lengths_to_padding_mask


def perplexities(logits: Tensor, lengths: Tensor | None, *, valid_only: bool = True
                 ) -> tuple[Tensor, Tensor]:
    """``(code_perplexity, prob_perplexity)`` of ``logits`` ``[B, S, V]``.

    Code perplexity counts argmax choices, prob perplexity averages the softmax.
    ``valid_only=False`` counts padded segments too (fairseq: their zero logits add
    uniform distributions, which inflates the prob perplexity of padded batches).
    """
    v = logits.shape[-1]
    flat = logits.reshape(-1, v).float()
    if valid_only and lengths is not None:
        flat = flat[~lengths_to_padding_mask(lengths, logits.shape[1]).reshape(-1)]
    hard = F.one_hot(flat.argmax(-1), v).float().mean(0)
    code_ppl = torch.exp(-(hard * torch.log(hard + 1e-7)).sum())
    soft = flat.softmax(-1).mean(0)
    prob_ppl = torch.exp(-(soft * torch.log(soft + 1e-7)).sum())
    return code_ppl, prob_ppl


def code_penalty(prob_perplexity: Tensor, vocab_size: int) -> Tensor:
    """``(V - prob_perplexity) / V``: 0 when every phone is used equally, near 1 when one is."""
    return (vocab_size - prob_perplexity) / vocab_size


def smoothness_penalty(logits: Tensor, lengths: Tensor | None) -> Tensor:
    """Mean over ``[B, S - 1, V]`` of squared differences of adjacent logits (pairs whose
    second segment is padding count as 0, as in fairseq)."""
    diff = F.mse_loss(logits[:, :-1], logits[:, 1:], reduction="none")
    if lengths is not None:
        pad = lengths_to_padding_mask(lengths, logits.shape[1])[:, 1:]
        diff = diff.masked_fill(pad[..., None], 0.0)
    return diff.mean()


def gradient_penalty(discriminator: nn.Module, real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """Sum of ``(||grad||_2 - 1)^2`` of the discriminator at random interpolations.

    ``real`` ``[B1, L, V]`` one-hot text and ``fake`` ``[B2, S, V]`` generated
    distributions are cut to the common ``[min B, min T]``; one interpolation weight
    per utterance. The norm runs over the time axis for every (utterance, phone), as
    fairseq computes it (``norm(dim=1)`` of a ``[B, T, V]`` gradient).
    """
    b = min(real.shape[0], fake.shape[0])
    t = min(real.shape[1], fake.shape[1])
    real, fake = real[:b, :t], fake[:b, :t]
    alpha = torch.rand(b, 1, 1, device=real.device, generator=generator).to(real.dtype)
    mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = discriminator(mix, None)
    (grad,) = torch.autograd.grad(scores.sum(), mix, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).sum()
