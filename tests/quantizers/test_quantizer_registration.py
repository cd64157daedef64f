"""The `quantizers` plugin registers both quantizers; their smoke configs build and train."""

from __future__ import annotations

import pytest
import torch

from w2v import plugin_manager
from w2v.config.structure import structure_component
from w2v.errors import ConfigError
from w2v.interfaces import Quantizer, Signal

torch.set_num_threads(1)


@pytest.mark.parametrize("name", ["gumbel", "kmeans"])
def test_registered_quantizer_builds_from_its_smoke_config(name):
    registry = plugin_manager.registry()
    reg = registry.get("quantizer", name)
    assert reg.plugin.name == "quantizers" and reg.smoke is not None
    spec = structure_component("quantizer", {"name": name, **reg.smoke}, path="model.quantizer")
    q = spec.build(Signal(kind="frames", dim=16, stride=320, receptive_field=400))
    assert isinstance(q, Quantizer)
    x = torch.randn(2, 5, 16, requires_grad=True)
    out = q.train()(x, torch.tensor([5, 3]))
    assert out.vectors.shape == (2, 5, q.produces().dim)
    assert out.codes.shape == (2, 5, q.groups)
    extra = out.aux_loss if out.aux_loss is not None else out.diversity
    (out.vectors.sum() + extra).backward()
    assert x.grad is not None


def test_unknown_key_in_a_quantizer_section_is_a_config_error():
    with pytest.raises(ConfigError, match="num_vars"):
        structure_component("quantizer", {"name": "gumbel", "num_var": 3}, path="model.quantizer")
    with pytest.raises(ConfigError, match="temp"):
        structure_component("quantizer", {"name": "gumbel", "temp": [2.0, 0.5]},
                            path="model.quantizer")
