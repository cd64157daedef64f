"""A third-party w2v plugin: the random-projection quantizer of BEST-RQ (Chiu et al., 2022).

Frames are projected by a frozen random matrix and matched, by cosine
similarity, against a frozen random codebook; nothing is trained. After
``pip install .`` any recipe can write::

    model:
      quantizer: {name: random_projection, num_vars: 8192, dim: 16}
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from w2v import hookimpl
from w2v.config import field, size
from w2v.interfaces import Quantizer, QuantizerOutput, Signal

W2V_PLUGIN_API = "2.0"


class RandomProjectionQuantizer(Quantizer):
    """Frozen random projection + frozen codebook; codes by nearest cosine neighbour.

    ``forward(x [B, T, C]) -> QuantizerOutput(vectors [B, T, dim], codes [B, T, 1])``.
    """

    @attrs.define(kw_only=True)
    class Config:
        num_vars: int = size(8192, 2, 1 << 20, "codebook entries")
        dim: int = size(16, 1, 4096, "codebook (projection) dimension")
        seed: int = field(0, "seed of the random projection and codebook")

    def __init__(self, config: Config, input_dim: int):
        super().__init__()
        self.groups, self.num_vars, self.dim = 1, config.num_vars, config.dim
        num_vars, dim = config.num_vars, config.dim
        gen = torch.Generator().manual_seed(config.seed)
        self.register_buffer("projection", torch.empty(input_dim, dim).normal_(generator=gen)
                             * input_dim ** -0.5)
        self.register_buffer("codebook", F.normalize(torch.randn(num_vars, dim, generator=gen), dim=-1))

    @classmethod
    def from_config(cls, config, upstream: Signal | None = None, **context):
        return cls(config, upstream.dim)

    def produces(self) -> Signal:
        return Signal(kind="frames", dim=self.dim)

    def forward(self, x, lengths=None):
        z = F.normalize(x.float() @ self.projection, dim=-1)
        codes = (z @ self.codebook.T).argmax(-1)
        used = torch.bincount(codes.flatten(), minlength=self.num_vars).float()
        p = used / used.sum().clamp(min=1)
        ppl = torch.exp(-(p * torch.log(p.clamp(min=1e-9))).sum())
        return QuantizerOutput(vectors=self.codebook[codes], codes=codes[..., None],
                               stats={"code_perplexity": ppl})


@hookimpl
def w2v_register_components(registrar):
    registrar.add_component("quantizer", "random_projection", RandomProjectionQuantizer,
                            smoke={"num_vars": 64, "dim": 8})
