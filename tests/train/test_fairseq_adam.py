"""`optimizer: adam` is fairseq's Adam: eps before the bias correction, decay on every parameter."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from w2v.train import TrainerConfig
from w2v.train import adam as adam_module
from w2v.train.adam import FairseqAdam
from w2v.train.optim import build_optimizers

torch.set_num_threads(1)


def fairseq_step(p, m, v, g, t, lr, b1, b2, eps, wd):
    """fairseq optim/adam.py for one scalar, written out in float64."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step_size = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    p = p - wd * lr * p
    return p - step_size * m / (math.sqrt(v) + eps), m, v


def test_first_step_on_a_known_gradient_equals_the_hand_computed_update():
    lr, b1, b2, eps = 1e-3, 0.9, 0.98, 1e-6
    g = 1e-5                                     # a gradient small against eps / sqrt(1 - b2)
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = FairseqAdam([p], lr=lr, betas=(b1, b2), eps=eps)
    p.grad = torch.tensor([g], dtype=torch.float64)
    opt.step()
    # by hand: m = 0.1 g, v = 0.02 g^2, step size lr sqrt(0.02) / 0.1
    by_hand = 1.0 - lr * math.sqrt(0.02) / 0.1 * (0.1 * g) / (math.sqrt(0.02) * g + eps)
    assert p.item() == pytest.approx(by_hand, rel=0, abs=1e-15)
    # torch's AdamW divides by sqrt(v / 0.02) + eps = g + eps instead: a 55 % larger step here
    q = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    torch_opt = torch.optim.AdamW([q], lr=lr, betas=(b1, b2), eps=eps, weight_decay=0.0)
    q.grad = torch.tensor([g], dtype=torch.float64)
    torch_opt.step()
    assert 1 - q.item() == pytest.approx(lr * g / (g + eps), rel=1e-12)
    assert (1 - q.item()) / (1 - p.item()) == pytest.approx(1.55, abs=0.01)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-kernel", "foreach"])
def test_five_steps_with_decay_match_fairseq_elementwise(fused, monkeypatch):
    """Both paths: torch's fused kernel with eps rescaled, and the foreach fallback for
    devices torch has no fused kernel for."""
    calls = []
    monkeypatch.setattr(adam_module, "has_fused_kernel",
                        lambda device, dtype: calls.append(device.type) or fused)
    torch.manual_seed(0)
    lr, b1, b2, eps, wd = 5e-4, 0.9, 0.98, 1e-6, 0.01
    params = [nn.Parameter(torch.randn(3, 4, dtype=torch.float64)),
              nn.Parameter(torch.randn(4, dtype=torch.float64))]
    grads = [[torch.randn_like(p) * 10.0 ** -k for p in params] for k in range(5)]
    opt = FairseqAdam(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    ref = [[(x, 0.0, 0.0) for x in p.detach().flatten().tolist()] for p in params]
    for t, gs in enumerate(grads, start=1):
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(gs):
            ref[i] = [fairseq_step(x, m, v, gi, t, lr, b1, b2, eps, wd)
                      for (x, m, v), gi in zip(ref[i], g.flatten().tolist())]
    for p, r in zip(params, ref):
        assert p.detach().flatten().tolist() == pytest.approx([x for x, _, _ in r], rel=1e-12)
    assert all(opt.state[p]["step"] == 5 for p in params)
    assert calls == ["cpu"] * 5                  # one bucket per step, the path chosen once


def test_cpu_float_parameters_take_the_fused_kernel():
    assert adam_module.has_fused_kernel(torch.device("cpu"), torch.float32)
    assert adam_module.has_fused_kernel(torch.device("cpu"), torch.bfloat16)
    assert not adam_module.has_fused_kernel(torch.device("cpu"), torch.int64)


def test_parameters_without_gradient_keep_their_own_step_count():
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = FairseqAdam([a, b], lr=0.1)
    a.grad = torch.ones(2)
    opt.step()
    b.grad = torch.ones(2)
    opt.step()
    assert opt.state[a]["step"] == 2 and opt.state[b]["step"] == 1
    # b's first step is a first step: bias-corrected m / sqrt(v) = 1
    assert b.detach().tolist() == pytest.approx([1 - 0.1 / (1 + 1e-8)] * 2)


def test_loads_the_state_torch_adamw_saved():
    torch.manual_seed(1)
    p = nn.Parameter(torch.randn(5))
    torch_opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0)
    p.grad = torch.randn(5)
    torch_opt.step()
    opt = FairseqAdam([p], lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    opt.load_state_dict(torch_opt.state_dict())
    p.grad = torch.randn(5)
    opt.step()
    assert opt.state[p]["step"] == 2


def test_trainer_adam_is_fairseq_adam_with_decay_on_every_parameter():
    model, objective = nn.Linear(3, 2), nn.Module()
    adam = build_optimizers(model, objective, TrainerConfig(optimizer="adam", weight_decay=0.1),
                            None)["default"]
    assert isinstance(adam, FairseqAdam)
    assert [g["weight_decay"] for g in adam.param_groups] == [0.1]
    adamw = build_optimizers(model, objective, TrainerConfig(optimizer="adamw", weight_decay=0.1),
                             None)["default"]
    assert type(adamw) is torch.optim.AdamW
    assert adamw.defaults["fused"]                               # CPU float32 has the kernel
    assert sorted(g["weight_decay"] for g in adamw.param_groups) == [0.0, 0.1]  # no decay on bias
