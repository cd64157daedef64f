"""w2v.dropout: F.dropout's semantics with a 16-bit mask kept as bools."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saved_storages import saved_storage_bytes
from w2v import dropout as dropout_module
from w2v.dropout import Dropout, dropout, dropout_matmul, keep_mask

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


@pytest.mark.parametrize("autocast", [False, True])
def test_dropout_matmul_equals_dropout_then_matmul_with_the_same_mask(autocast):
    x = torch.rand(2, 3, 40, 40).softmax(-1).requires_grad_()
    v = torch.randn(2, 3, 40, 8, requires_grad=True)
    g = torch.randn(2, 3, 40, 8)
    results = []
    for fused in (False, True):
        torch.manual_seed(5)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = dropout_matmul(x, v, 0.1) if fused else dropout(x, 0.1) @ v
        y.backward(g)
        results.append((y.detach(), x.grad, v.grad))
        x.grad = v.grad = None
    for plain, fused in zip(*results):
        assert fused.dtype == plain.dtype and torch.equal(fused, plain)   # the same arithmetic


def test_dropout_matmul_gradients_are_exact_for_a_fixed_mask(monkeypatch):
    keep = torch.rand(2, 5, 6) > 0.3
    monkeypatch.setattr(dropout_module, "keep_mask", lambda shape, p, device: keep)
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: dropout_matmul(a, b, 0.3), (x, v))


def test_dropout_matmul_after_a_softmax_keeps_the_mask_not_the_dropped_copy():
    scores = torch.randn(2, 4, 64, 64, requires_grad=True)
    v = torch.randn(2, 4, 64, 16, requires_grad=True)
    _, fused = saved_storage_bytes(lambda: dropout_matmul(scores.softmax(-1), v, 0.1))
    _, plain = saved_storage_bytes(lambda: dropout(scores.softmax(-1), 0.1) @ v)
    # the softmax output (which the softmax keeps anyway), v and the bool mask; the plain
    # pair also keeps the dropped fp32 copy
    assert fused == scores.numel() * 4 + v.numel() * 4 + scores.numel()
    assert plain - fused == scores.numel() * 4


def test_dropout_matmul_outside_training_or_without_dropout_is_the_plain_product():
    x, v = torch.rand(3, 7, 7), torch.randn(3, 7, 2)
    assert torch.equal(dropout_matmul(x, v, 0.1, training=False), x @ v)
    assert torch.equal(dropout_matmul(x, v, 0.0), x @ v)
    assert torch.equal(dropout_matmul(x, v, 1.0), torch.zeros(3, 7, 2))
