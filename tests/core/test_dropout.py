"""w2v.dropout: F.dropout's semantics with a 16-bit mask kept as bools."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from w2v import dropout as dropout_module
from w2v.dropout import Dropout, dropout, keep_mask

torch.set_num_threads(1)


@pytest.mark.parametrize("p", [0.1, 0.05, 0.5])
def test_drop_rate_is_p_rounded_to_a_multiple_of_2_to_the_minus_16(p):
    torch.manual_seed(0)
    mask = ~keep_mask((4_000_000,), p)
    assert mask.dtype == torch.bool
    p_rounded = round(p * 65536) / 65536
    sigma = (p_rounded * (1 - p_rounded) / mask.numel()) ** 0.5
    assert abs(mask.float().mean().item() - p_rounded) < 4 * sigma


def test_kept_elements_are_scaled_to_keep_the_mean_and_dropped_ones_are_zero():
    torch.manual_seed(0)
    x = torch.rand(3, 1000, 7, dtype=torch.float64) + 1.0
    y = dropout(x, 0.1)
    kept = y != 0
    scale = 65536 / (65536 - round(0.1 * 65536))
    torch.testing.assert_close(y[kept], x[kept] * scale, rtol=1e-15, atol=0)
    assert 0.09 < 1 - kept.double().mean().item() < 0.11


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(50, 40, requires_grad=True)
    y = dropout(x, 0.3)
    g = torch.randn_like(y)
    y.backward(g)
    kept = y.detach() != 0
    scale = 65536 / (65536 - round(0.3 * 65536))
    torch.testing.assert_close(x.grad, torch.where(kept, g * scale, torch.zeros_like(g)))


def test_same_seed_same_mask_and_other_cases_follow_f_dropout():
    x = torch.randn(8, 9)
    torch.manual_seed(3)
    a = dropout(x, 0.2)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.2))
    assert dropout(x, 0.2, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert dropout(x.bfloat16(), 0.2).dtype == torch.bfloat16


def test_module_is_a_drop_in_for_nn_dropout():
    m = Dropout(0.25)
    assert isinstance(m, torch.nn.Dropout) and m.p == 0.25 and m.state_dict() == {}
    x = torch.randn(100, 100)
    assert m.eval()(x) is x
    y = m.train()(x)
    assert abs((y == 0).float().mean().item() - 0.25) < 0.03


def test_other_devices_use_torchs_kernel(monkeypatch):
    calls, torch_dropout = [], F.dropout
    monkeypatch.setattr(dropout_module.F, "dropout",
                        lambda x, p, training: calls.append(p) or torch_dropout(x, p, training))
    x = torch.randn(4, 4, device="meta")
    assert dropout(x, 0.5).shape == (4, 4) and calls == [0.5]


def test_non_finite_values_propagate_as_in_f_dropout():
    x = torch.tensor([float("nan"), float("inf"), 1.0] * 1000)
    torch.manual_seed(0)
    y = dropout(x, 0.5)
    assert torch.isnan(y[0::3]).all()                            # NaN * 0 is NaN, as in torch
    assert (torch.isinf(y[1::3]) | torch.isnan(y[1::3])).all()
    torch.manual_seed(0)
    assert torch.isnan(F.dropout(x, 0.5)[0::3]).all()
