"""The wav2vec 2.0 context network: Transformer (or Conformer) with a conv positional embedding.

``forward(x [B, T, D], lengths, layers=None) -> AggregatorOutput``:

1. padded frames are zeroed, the positional conv output is added;
2. post-LN (BASE, ``layer_norm_first: false``): LayerNorm, then the blocks,
   no final norm; pre-LN (LARGE): the blocks, then a final LayerNorm;
3. ``layers`` holds each block's raw output (fairseq ``layer_results``; Hugging
   Face ``hidden_states[i + 1]`` except that a pre-LN model's last HF entry has
   the final LayerNorm applied), padded frames zero;
4. ``output`` is the final output, final LayerNorm included. When ``layers=``
   stops the pass early, ``output`` is the last computed block's raw output
   (fairseq ``extract_features(layer=i)``).

Attention uses ``F.scaled_dot_product_attention`` with a boolean
``[B, 1, 1, T]`` key-padding mask (None for padding-free batches, so the
flash kernel can run). ``causal: true`` makes attention causal and pads the
positional conv on the left; LayerNorms are per frame, so no later frame
leaks into an earlier one. LayerDrop skips whole blocks in training (a
skipped block's entry in ``layers`` repeats its input). With activation
checkpointing on (:meth:`TransformerAggregator.set_activation_checkpointing`)
each block keeps only its input in training and recomputes the rest in backward.

Conformer blocks (``layer_type: conformer``) take their positions from the
positional conv (``pos_enc_type: abs``, fairseq's ``TransformerEncoder``) or,
without it, from relative (``rel_pos``) or rotary (``rope``) attention
(fairseq's ``ConformerEncoder``); ``fairseq_compat`` keeps fairseq's handling
of padded frames there (see :mod:`.conformer`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from w2v.config import check, choice, field, real, size
from w2v.dropout import Dropout
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Aggregator, AggregatorOutput, Signal, lengths_to_padding_mask
from w2v.recompute import recomputed

from .attention import SelfAttention, key_padding_mask
from .conformer import ConformerLayer
from .gelu_linear import gelu_linear
from .positional import positional_embedding


@attrs.define(kw_only=True)
class TransformerAggregatorConfig:
    embed_dim: int = size(768, 8, 16384, "model width D (the input is projected to it)")
    layers: int = size(12, 0, 256, "number of blocks")
    ffn_dim: int = size(3072, 1, 65536, "feed-forward inner width")
    heads: int = size(12, 1, 256, "attention heads; must divide embed_dim")
    layer_norm_first: bool = field(False, "pre-LN blocks + final LayerNorm (LARGE); False = "
                                          "post-LN blocks after an input LayerNorm (BASE)")
    dropout: float = real(0.1, 0.0, 1.0, "dropout on the input and on each residual branch")
    attention_dropout: float = real(0.1, 0.0, 1.0, "dropout on attention weights")
    activation_dropout: float = real(0.0, 0.0, 1.0, "dropout after the feed-forward activation")
    layerdrop: float = real(0.0, 0.0, 1.0, "probability of skipping a block in training")
    conv_pos: int = size(128, 1, 4096, "kernel of the convolutional positional embedding")
    conv_pos_groups: int = size(16, 1, 16384, "groups of the positional conv; must divide embed_dim")
    pos_conv_depth: int = size(1, 0, 16, "1: one weight-normed conv (wav2vec 2.0); > 1: stacked "
                                         "convs with LayerNorm (data2vec); 0: no positional conv")
    causal: bool = field(False, "causal attention and a left-padded positional conv")
    layer_type: Literal["transformer", "conformer"] = choice(
        "transformer", "block type: transformer, or conformer (FFN/2, attention, conv module, "
                       "FFN/2; its attention dropout is `dropout`, as in fairseq)")
    conformer_kernel: int = size(31, 1, 1023, "conformer: depthwise conv kernel (odd)")
    pos_enc_type: Literal["abs", "rel_pos", "rope"] = choice(
        "abs", "conformer positions: abs = the positional conv; rel_pos = Transformer-XL "
               "relative attention, rope = rotary attention (both without the positional conv, "
               "as fairseq's ConformerEncoder)")
    rotary_base: float = real(10000.0, 1.0, None, "rope: base of the rotation frequencies")
    required_seq_len_multiple: int = size(2, 1, 1024, "padded batches are padded further to a "
                                                      "multiple of this (fairseq; no effect on "
                                                      "results except under fairseq_compat)")
    layer_norm_eps: float = real(1e-5, 0.0, 1.0, "epsilon of every LayerNorm")
    fairseq_compat: bool = field(False, "conformer: let padded frames reach the depthwise conv "
                                        "as fairseq and Hugging Face do (with abs positions "
                                        "fairseq pads every input to required_seq_len_multiple "
                                        "first); off: a padded batch gives each utterance its "
                                        "features alone")

    def __attrs_post_init__(self) -> None:
        check(self.embed_dim % self.heads == 0, "heads",
              f"embed_dim ({self.embed_dim}) must be divisible by heads ({self.heads}).")
        check(self.embed_dim % self.conv_pos_groups == 0, "conv_pos_groups",
              f"embed_dim ({self.embed_dim}) must be divisible by conv_pos_groups "
              f"({self.conv_pos_groups}).")
        check(self.layer_type != "conformer" or self.conformer_kernel % 2 == 1, "conformer_kernel",
              f"must be odd, found {self.conformer_kernel}.")
        check(self.layer_type == "conformer" or self.pos_enc_type == "abs", "pos_enc_type",
              f"`{self.pos_enc_type}` needs Conformer blocks (layer_type: conformer); "
              f"Transformer blocks take their positions from the positional conv (abs).")


class TransformerLayer(nn.Module):
    """One post-LN or pre-LN Transformer block with fairseq's parameter names.

    ``forward(x [B, T, D], mask [B, 1, 1, T] | None, causal) -> [B, T, D]``.
    """

    def __init__(self, dim: int, ffn_dim: int, heads: int, *, dropout: float,
                 attention_dropout: float, activation_dropout: float, layer_norm_first: bool,
                 eps: float) -> None:
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.self_attn = SelfAttention(dim, heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = Dropout(dropout)
        self.activation_dropout = Dropout(activation_dropout)

    def feed_forward(self, x: Tensor) -> Tensor:
        """``fc1 -> GELU -> activation dropout -> fc2 -> dropout``. Without activation
        dropout, GELU and ``fc2`` run as :func:`gelu_linear`, which keeps ``fc1``'s output
        instead of the GELU's for backward, unless ``fc2`` was replaced (an adapter) or has
        hooks, which must see their call."""
        hidden = self.fc1(x)
        fc2 = self.fc2
        if (self.activation_dropout.p == 0 or not self.training) and type(fc2) is nn.Linear \
                and not (fc2._forward_hooks or fc2._forward_pre_hooks):
            return self.dropout(gelu_linear(hidden, fc2.weight, fc2.bias))
        return self.dropout(fc2(self.activation_dropout(F.gelu(hidden))))

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False,
                padding: Tensor | None = None) -> Tensor:
        if self.layer_norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), mask, causal))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, mask, causal)))
        return self.final_layer_norm(x + self.feed_forward(x))


def _init_bert(module: nn.Module) -> None:
    """fairseq ``init_bert_params``: Linear weights ~ N(0, 0.02), biases 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class TransformerAggregator(Aggregator):
    """wav2vec 2.0 context network (see the module docstring).

    Parameters: ``positional.*``, ``layer_norm.*`` (input norm for post-LN, final
    norm for pre-LN), ``layers.{i}.*`` (:class:`TransformerLayer` or
    :class:`~.conformer.ConformerLayer`).
    """

    Config = TransformerAggregatorConfig

    def __init__(self, config: TransformerAggregatorConfig, upstream: Signal | None = None
                 ) -> None:
        super().__init__()
        c = config
        self.config = c
        self.input_dim = c.embed_dim
        self.causal = c.causal
        self.layer_norm_first = c.layer_norm_first
        self.layerdrop = c.layerdrop
        self.seq_multiple = c.required_seq_len_multiple
        self._upstream = upstream
        conformer = c.layer_type == "conformer"
        #: fairseq's padding (see ``fairseq_compat``); only Conformer blocks can see it.
        self.compat_padding = conformer and c.fairseq_compat
        depth = c.pos_conv_depth if c.pos_enc_type == "abs" else 0
        self.positional = positional_embedding(c.embed_dim, c.conv_pos, c.conv_pos_groups,
                                               depth, causal=c.causal)
        self.layer_norm = nn.LayerNorm(c.embed_dim, eps=c.layer_norm_eps)
        self.dropout = Dropout(c.dropout)
        if conformer:
            blocks = [ConformerLayer(c.embed_dim, c.ffn_dim, c.heads, dropout=c.dropout,
                                     attention_dropout=c.dropout, kernel=c.conformer_kernel,
                                     causal=c.causal, pos_enc_type=c.pos_enc_type,
                                     rotary_base=c.rotary_base, fairseq_compat=c.fairseq_compat)
                      for _ in range(c.layers)]
        else:
            blocks = [TransformerLayer(c.embed_dim, c.ffn_dim, c.heads, dropout=c.dropout,
                                       attention_dropout=c.attention_dropout,
                                       activation_dropout=c.activation_dropout,
                                       layer_norm_first=c.layer_norm_first, eps=c.layer_norm_eps)
                      for _ in range(c.layers)]
        self.layers = nn.ModuleList(blocks)
        self.layers.apply(_init_bert)
        #: recompute each block's activations in backward (``trainer.activation_checkpointing``)
        self.activation_checkpointing = False

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Keep only each block's input in training; recompute the rest in backward."""
        self.activation_checkpointing = bool(enabled)

    def compile_regions(self) -> list[nn.Module]:
        """The blocks, for regional ``torch.compile`` (``trainer.compile``)."""
        return list(self.layers)

    @classmethod
    def from_config(cls, config: TransformerAggregatorConfig, upstream: Signal | None = None,
                    **context) -> "TransformerAggregator":
        if upstream is not None and upstream.kind not in ("frames", "features"):
            raise FitError(f"the Transformer context network reads frame features, but its input "
                           f"is {upstream.describe()}.",
                           hint="Put an encoder (or a token embedding) in front of it.")
        return cls(config, upstream)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def produces(self) -> Signal:
        """Frames of width ``embed_dim`` at the upstream rate; causal only when ``causal`` is set
        and the upstream is causal. Attention spans the whole (past) sequence, so the
        receptive field is left as the upstream's."""
        dim = self.config.embed_dim
        if self._upstream is None:
            return Signal(kind="frames", dim=dim, causal=self.causal)
        return self._upstream.then(kind="frames", dim=dim, causal=self.causal)

    def _last_layer(self, layers: int | Sequence[int] | None) -> int:
        n = len(self.layers)
        if layers is None:
            return n - 1
        wanted = [layers] if isinstance(layers, int) else list(layers)
        if not wanted:
            raise ConfigError("`layers` is an empty list; ask for at least one block.",
                              key="layers")
        resolved = []
        for i in wanted:
            if not -n <= int(i) < n:
                raise ConfigError(f"block {i} does not exist: this context network has {n} "
                                  f"blocks (0..{n - 1}, or negative from the end).", key="layers")
            resolved.append(int(i) % n)
        return max(resolved)

    def forward(self, x: Tensor, lengths: Tensor | None = None,
                layers: int | Sequence[int] | None = None) -> AggregatorOutput:
        B, T, D = x.shape
        if D != self.input_dim:
            raise ValueError(f"expected input width {self.input_dim}, found {D}")
        last = self._last_layer(layers)
        padding = lengths_to_padding_mask(lengths, T)
        if padding is not None:
            x = x.masked_fill(padding[..., None], 0.0)
        if self.positional is not None:
            x = x + self.positional(x, padding)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        extra = (-T) % self.seq_multiple if padding is not None else 0
        if self.compat_padding:          # fairseq: TransformerEncoder pads, ConformerEncoder not
            extra = (-T) % self.seq_multiple if self.config.pos_enc_type == "abs" else 0
            if extra and padding is None:
                padding = torch.zeros(B, T, dtype=torch.bool, device=x.device)
        if extra:
            x = F.pad(x, (0, 0, 0, extra))
            padding = F.pad(padding, (0, extra), value=True)
        x = self.dropout(x)
        mask = None if self.causal else key_padding_mask(padding)
        outputs: list[Tensor] = []
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers[:last + 1]):
            skip = self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop
            if not skip:
                x = recomputed(layer, x, mask, self.causal, padding) if recompute else \
                    layer(x, mask, self.causal, padding)
                if padding is not None and not self.compat_padding:
                    x = x.masked_fill(padding[..., None], 0.0)
            kept = x.masked_fill(padding[..., None], 0.0) if self.compat_padding and \
                padding is not None else x               # compat: the blocks keep padded values
            outputs.append(kept[:, :T] if extra else kept)
        out = outputs[-1] if outputs else (x[:, :T] if extra else x)
        if self.layer_norm_first and last == len(self.layers) - 1:
            out = self.layer_norm(out)
            if padding is not None:
                out = out.masked_fill(padding[:, :T, None], 0.0)
        return AggregatorOutput(output=out, layers=outputs, lengths=lengths)
