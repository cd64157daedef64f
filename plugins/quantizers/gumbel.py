"""Gumbel-softmax product quantizer (vq-wav2vec, wav2vec 2.0).

Each frame picks one of ``V`` entries in each of ``G`` codebook groups; the
code vector is the concatenation of the chosen entries. Training samples the
choice with a hard (straight-through) Gumbel softmax at a temperature that
anneals with the update count; evaluation takes the argmax.

Parameter names follow fairseq/Hugging Face so checkpoints map one to one:
``codevectors`` (fairseq ``vars``) ``[1, G*V (V if combine_groups), dim/G]``
and ``weight_proj`` ``Linear(C, G*V)`` (with ``weight_proj_depth > 1`` the
hidden blocks of fairseq's ``weight_proj.{0..}`` live in ``weight_proj_hidden``).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import check, choice, field, real, size
from w2v.errors import ConfigError
from w2v.interfaces import (Quantizer, QuantizerOutput, Signal, lengths_to_padding_mask,
                            upstream_dim)


@attrs.define(kw_only=True)
class GumbelQuantizerConfig:
    groups: int = size(2, 1, 64, "codebook groups G; one entry is chosen per group")
    num_vars: int = size(320, 2, 1 << 16, "entries V per group")
    dim: int = size(0, 0, 1 << 16, "code vector width (fairseq vq_dim / latent_dim); 0 = the "
                                   "upstream width. Must be divisible by `groups`")
    combine_groups: bool = field(False, "share one codebook of V entries across all groups")
    temp: tuple[float, float, float] = field(
        (2.0, 0.5, 0.999995), "Gumbel temperature (max, min, decay)")
    temp_schedule: Literal["exponential", "linear"] = choice(
        "exponential", "exponential: max(max*decay^updates, min) (fairseq); linear: max to min "
        "over `temp_fraction` of the trainer's max_updates (vq-wav2vec paper)")
    temp_fraction: float = real(0.7, 0.0, 1.0, "linear schedule: fraction of max_updates over "
                                                "which the temperature anneals")
    weight_proj_depth: int = size(1, 1, 8, "layers of the logit projection (hidden blocks + 1)")
    weight_proj_factor: int = size(3, 1, 16, "hidden width of the logit projection, times the "
                                             "input width (only with depth > 1)")
    activation: Literal["gelu", "relu"] = choice("gelu", "activation of the hidden blocks")
    hard: bool = field(True, "straight-through hard one-hot in training (soft mixture if False)")
    std: float = real(0.0, 0.0, None, "codebook init: 0 = uniform [0, 1), > 0 = normal(0, std)")

    def __attrs_post_init__(self) -> None:
        check(len(self.temp) == 3, "temp", f"expected (max, min, decay), found {self.temp!r}.")
        tmax, tmin, decay = (float(t) for t in self.temp)
        check(0 < tmin <= tmax, "temp", f"expected 0 < min <= max, found max {tmax}, min {tmin}.")
        check(0 < decay <= 1, "temp", f"the decay must be in (0, 1], found {decay}.")
        check(self.dim % self.groups == 0, "dim",
              f"must be divisible by groups ({self.groups}), found {self.dim}.")


def perplexity(probs: Tensor) -> Tensor:
    """``exp(entropy)`` of each row of ``probs`` ``[G, V]``, summed over groups (fairseq eps 1e-7)."""
    return torch.exp(-(probs * torch.log(probs + 1e-7)).sum(-1)).sum()


def code_frequencies(codes: Tensor, num_vars: int, valid: Tensor | None = None) -> Tensor:
    """``[G, V]`` frequency of each entry among ``codes`` ``[N, G]`` (rows where ``valid``
    ``[N]``), without a device sync."""
    N, G = codes.shape
    w = (torch.ones(N, device=codes.device) if valid is None else valid.float())
    flat = (codes + torch.arange(G, device=codes.device) * num_vars).reshape(-1)
    counts = torch.zeros(G * num_vars, device=codes.device).scatter_add_(
        0, flat, w[:, None].expand(N, G).reshape(-1))
    return counts.view(G, num_vars) / w.sum().clamp(min=1)


class GumbelQuantizer(Quantizer):
    """Product quantizer with Gumbel-softmax code selection.

    ``forward(x [B, T, C], lengths) -> QuantizerOutput`` with ``vectors``
    ``[B, T, dim]``, ``codes`` ``[B, T, G]``, ``diversity`` ``(G*V - ppl)/(G*V)``
    and stats ``code_perplexity``, ``prob_perplexity``, ``temp``. Perplexities
    are over valid frames (``lengths``), summed over groups.

    The trainer calls :meth:`set_num_updates` each step; for the ``linear``
    schedule it also sets :attr:`max_updates` (via :meth:`set_max_updates`);
    until then the linear schedule holds the maximum temperature.
    """

    Config = GumbelQuantizerConfig

    def __init__(self, config: GumbelQuantizerConfig, input_dim: int,
                 upstream: Signal | None = None) -> None:
        super().__init__()
        groups, num_vars = config.groups, config.num_vars
        dim = config.dim or input_dim
        if dim % groups:
            raise ConfigError(f"the code vector width ({dim}) must be divisible by groups "
                              f"({groups}).", key="dim")
        self.input_dim = input_dim
        self.groups = groups
        self.num_vars = num_vars
        self.dim = dim
        self.combine_groups = config.combine_groups
        self.max_temp, self.min_temp, self.temp_decay = (float(t) for t in config.temp)
        self.temp_schedule = config.temp_schedule
        self.temp_fraction = config.temp_fraction
        self.max_updates: int | None = None
        self.hard = config.hard
        self._upstream = upstream

        entries = num_vars if config.combine_groups else groups * num_vars
        self.codevectors = nn.Parameter(torch.empty(1, entries, dim // groups))
        if config.std > 0:
            nn.init.normal_(self.codevectors, mean=0.0, std=config.std)
        else:
            nn.init.uniform_(self.codevectors)

        act = {"gelu": nn.GELU, "relu": nn.ReLU}[config.activation]
        depth, factor = config.weight_proj_depth, config.weight_proj_factor
        if depth > 1:
            inner = input_dim * factor
            blocks: list[nn.Module] = []
            for i in range(depth - 1):
                blocks += [nn.Linear(input_dim if i == 0 else inner, inner), act()]
            self.weight_proj_hidden: nn.Module = nn.Sequential(*blocks)
            self.weight_proj = nn.Linear(inner, groups * num_vars)
        else:  # fairseq re-initialises only the single-layer projection
            self.weight_proj_hidden = nn.Identity()
            self.weight_proj = nn.Linear(input_dim, groups * num_vars)
            nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
            nn.init.zeros_(self.weight_proj.bias)

    @classmethod
    def from_config(cls, config: GumbelQuantizerConfig, upstream: Signal | None = None,
                    **context) -> "GumbelQuantizer":
        return cls(config, upstream_dim(upstream, "Gumbel quantizer"), upstream)

    def health_checks(self) -> list:
        """Codebook collapse, watched by the trainer (see :mod:`.health`)."""
        from .health import CodebookCollapse
        return [CodebookCollapse(self.groups, self.groups * self.num_vars)]

    def produces(self) -> Signal:
        if self._upstream is None:
            return Signal(kind="frames", dim=self.dim, causal=True)
        return self._upstream.then(kind="frames", dim=self.dim)

    # ------------------------------------------------------------ temperature
    def set_max_updates(self, max_updates: int | None) -> None:
        """The run's total updates (the linear schedule anneals over a fraction of it)."""
        self.max_updates = max_updates

    @property
    def temperature(self) -> float:
        """The current Gumbel temperature, a pure function of ``num_updates``."""
        n = self.num_updates
        if self.temp_schedule == "linear":
            if not self.max_updates:
                return self.max_temp
            span = max(1.0, self.temp_fraction * self.max_updates)
            frac = min(1.0, n / span)
            return self.max_temp - (self.max_temp - self.min_temp) * frac
        return max(self.max_temp * self.temp_decay ** n, self.min_temp)

    # --------------------------------------------------------------- codebook
    def codebook(self) -> Tensor:
        """``[G, V, dim/G]`` entries of each group (a view; shared across groups if combined)."""
        book = self.codevectors.view(-1, self.num_vars, self.dim // self.groups)
        return book.expand(self.groups, -1, -1) if self.combine_groups else book

    def lookup(self, codes: Tensor) -> Tensor:
        """Code vectors ``[..., dim]`` of ``codes`` ``[..., G]`` (no gradient to the choice)."""
        book = self.codebook()
        group = torch.arange(self.groups, device=codes.device)
        return book[group, codes].flatten(-2)

    def sample_from_codebook(self, n: int) -> Tensor:
        """``[n, dim]`` code vectors with uniformly random entries (fairseq codebook negatives)."""
        codes = torch.randint(0, self.num_vars, (n, self.groups), device=self.codevectors.device)
        return self.lookup(codes)

    def logits(self, x: Tensor) -> Tensor:
        """``[B, T, C]`` -> ``[B*T, G, V]`` code logits in fp32."""
        h = self.weight_proj(self.weight_proj_hidden(x))
        return h.float().reshape(-1, self.groups, self.num_vars)

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> QuantizerOutput:
        B, T, _ = x.shape
        G, V = self.groups, self.num_vars
        tau = self.temperature
        logits = self.logits(x)                                            # [BT, G, V] fp32
        with torch.autocast(device_type=x.device.type, enabled=False):
            pad = lengths_to_padding_mask(lengths, T)
            valid = None if pad is None else (~pad).reshape(-1)            # [BT]

            probs = torch.softmax(logits, dim=-1)
            argmax = logits.argmax(-1)                                     # [BT, G]
            if valid is None:
                avg_probs = probs.mean(0)
            else:
                w = valid.to(probs.dtype)[:, None, None]
                avg_probs = (probs * w).sum(0) / w.sum().clamp(min=1)
            prob_ppl = perplexity(avg_probs)
            with torch.no_grad():
                code_ppl = perplexity(code_frequencies(argmax, V, valid))

            if self.training:
                gumbels = -torch.empty_like(logits).exponential_().log()
                soft = torch.softmax((logits + gumbels) / tau, dim=-1)
                codes = soft.argmax(-1)
                if self.hard:
                    one_hot = F.one_hot(codes, V).to(soft.dtype)
                    weights = one_hot - soft.detach() + soft               # straight-through
                else:
                    weights = soft
            else:
                codes = argmax
                weights = F.one_hot(codes, V).to(logits.dtype)

        book = self.codebook()                                             # [G, V, d]
        # per-group matmul: [G, BT, V] @ [G, V, d] -> [G, BT, d]; no [BT, G*V, d] broadcast
        vectors = torch.bmm(weights.to(book.dtype).transpose(0, 1), book)
        vectors = vectors.transpose(0, 1).reshape(B, T, self.dim)
        num = G * V
        return QuantizerOutput(
            vectors=vectors,
            codes=codes.view(B, T, G),
            diversity=(num - prob_ppl) / num,
            stats={"code_perplexity": code_ppl.detach(), "prob_perplexity": prob_ppl.detach(),
                   "temp": tau},
        )
