"""row_conv: a strided conv1d over [B, T, C] rows, as matrix products."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from w2v.plugins.wav2vec2.row_conv import row_conv

torch.set_num_threads(1)

SHAPES = [(3, 2), (2, 2), (1, 3), (10, 5), (4, 1), (2, 3)]  # (kernel, stride)


def _take(path: str, monkeypatch) -> None:
    from w2v.plugins.wav2vec2 import row_conv as module

    monkeypatch.setattr(module, "SPLIT_MIN", 0 if path == "tap groups" else 1 << 30)


@pytest.fixture(params=["tap groups", "window matrix"])
def path(request, monkeypatch):
    """Both ways: taps in strided views of the input, and one im2col window matrix."""
    _take(request.param, monkeypatch)
    return request.param


@pytest.fixture
def tap_groups(monkeypatch):
    _take("tap groups", monkeypatch)


@pytest.mark.parametrize("kernel,stride", SHAPES)
def test_gradients_are_exact_in_float64(kernel, stride, path):
    g = torch.Generator().manual_seed(kernel * 10 + stride)
    x = torch.randn(2, 23, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: row_conv(x, w, stride), (x, w))


@pytest.mark.parametrize("kernel,stride", SHAPES)
def test_equals_conv1d_on_the_transposed_input(kernel, stride, path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 101, 16, generator=g, requires_grad=True)
    w = torch.randn(8, 16, kernel, generator=g, requires_grad=True)
    grad = torch.randn(3, (101 - kernel) // stride + 1, 8, generator=g)
    ours = row_conv(x, w, stride)
    ours.backward(grad)
    got = (ours.detach(), x.grad.clone(), w.grad.clone())
    x.grad = w.grad = None
    ref = F.conv1d(x.transpose(1, 2), w, stride=stride).transpose(1, 2)
    ref.backward(grad)
    for a, b in zip(got, (ref.detach(), x.grad, w.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_non_contiguous_input_is_read_as_its_values(path):
    x = torch.randn(2, 16, 30).transpose(1, 2)                  # [B, T, C], strided
    w = torch.randn(5, 16, 3)
    torch.testing.assert_close(row_conv(x, w, 2),
                               F.conv1d(x.transpose(1, 2), w, stride=2).transpose(1, 2),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2)])
def test_gelu_input_gradients_are_exact_in_float64(kernel, stride, path):
    g = torch.Generator().manual_seed(kernel * 10 + stride)
    x = torch.randn(2, 23, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: row_conv(x, w, stride, gelu=True), (x, w))


@pytest.mark.parametrize("steps,kernel,stride", [(41, 3, 2), (40, 2, 2), (41, 2, 2)])
def test_gelu_input_equals_the_convolution_of_the_gelu_and_keeps_only_the_input(
        steps, kernel, stride, path):
    # (40, 2, 2): windows that tile the input exactly are a view of it, which stays unchanged
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, steps, 16, generator=g, requires_grad=True)
    z_before = z.detach().clone()
    w = torch.randn(8, 16, kernel, generator=g, requires_grad=True)
    grad = torch.randn(2, (steps - kernel) // stride + 1, 8, generator=g)
    saved = []

    def pack(t):
        saved.append(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ours = row_conv(z, w, stride, gelu=True)
    assert torch.equal(z.detach(), z_before)
    assert set(saved) == {z.untyped_storage().data_ptr(), w.untyped_storage().data_ptr()}
    ours.backward(grad)
    got = (ours.detach(), z.grad.clone(), w.grad.clone())
    z.grad = w.grad = None
    ref = row_conv(F.gelu(z), w, stride)
    ref.backward(grad)
    assert torch.equal(z.detach(), z_before)
    for a, b in zip(got, (ref.detach(), z.grad, w.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _group_norm_gelu(x, w, b):
    """The reference for ``norm=(w, b, eps)``: GELU of GroupNorm(C, C) over each utterance's T."""
    return F.gelu(F.group_norm(x.transpose(1, 2), x.shape[-1], w, b, 1e-5)).transpose(1, 2)


@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2)])
def test_norm_input_gradients_are_exact_in_float64(kernel, stride, path):
    g = torch.Generator().manual_seed(kernel * 10 + stride)
    x = torch.randn(2, 23, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, kernel, generator=g, dtype=torch.float64, requires_grad=True)
    nw, nb = (torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
              for _ in range(2))
    assert torch.autograd.gradcheck(
        lambda x, w, nw, nb: row_conv(x, w, stride, norm=(nw, nb, 1e-5)), (x, w, nw, nb))


@pytest.mark.parametrize("steps,kernel,stride", [(41, 3, 2), (40, 2, 2), (41, 2, 2)])
def test_norm_input_equals_the_convolution_of_the_normed_gelu_and_keeps_only_the_input(
        steps, kernel, stride, path):
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(2, steps, 16, generator=g) * 3 + 1).requires_grad_()   # mean, scale != 0, 1
    x_before = x.detach().clone()
    w = torch.randn(8, 16, kernel, generator=g, requires_grad=True)
    nw, nb = (torch.randn(16, generator=g, requires_grad=True) for _ in range(2))
    grad = torch.randn(2, (steps - kernel) // stride + 1, 8, generator=g)
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ours = row_conv(x, w, stride, norm=(nw, nb, 1e-5))
    assert sum(saved) == x.numel() + w.numel() + 2 * 16   # no activation kept beside x
    ours.backward(grad)
    assert torch.equal(x.detach(), x_before)
    got = (ours.detach(), x.grad.clone(), w.grad.clone(), nw.grad.clone(), nb.grad.clone())
    x.grad = w.grad = nw.grad = nb.grad = None
    ref = row_conv(_group_norm_gelu(x, nw, nb), w, stride)
    ref.backward(grad)
    for a, b in zip(got, (ref.detach(), x.grad, w.grad, nw.grad, nb.grad)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trained", ["norm", "conv"])
def test_norm_input_trains_what_needs_gradients_without_the_inputs(trained):
    """The input needs no gradient: the norm's params alone train, or the conv's weight."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 41, 16, generator=g)
    w = torch.randn(8, 16, 3, generator=g, requires_grad=trained == "conv")
    nw, nb = (torch.randn(16, generator=g, requires_grad=trained == "norm") for _ in range(2))
    params = (nw, nb) if trained == "norm" else (w,)
    row_conv(x, w, 2, norm=(nw, nb, 1e-5)).square().sum().backward()
    got = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    row_conv(_group_norm_gelu(x, nw, nb), w, 2).square().sum().backward()
    for a, p in zip(got, params):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("activation", [None, "gelu", "norm"])
def test_activation_pieces_give_the_whole_result(monkeypatch, tap_groups, activation):
    from w2v.plugins.wav2vec2 import row_conv as module

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 103, 8, generator=g, requires_grad=True)
    w = torch.randn(6, 8, 3, generator=g, requires_grad=True)
    nw, nb = (torch.randn(8, generator=g, requires_grad=True) for _ in range(2))
    grad = torch.randn(2, 51, 6, generator=g)
    kwargs = {"gelu": activation == "gelu",
              "norm": (nw, nb, 1e-5) if activation == "norm" else None}
    results = []
    for chunk_bytes in (module.CHUNK_BYTES, 13 * 8 * 4):     # whole; 13 rows, 6 steps a piece
        monkeypatch.setattr(module, "CHUNK_BYTES", chunk_bytes)
        y = row_conv(x, w, 2, **kwargs)
        y.backward(grad)
        results.append((y.detach(), x.grad, w.grad, nw.grad, nb.grad))
        x.grad = w.grad = nw.grad = nb.grad = None
    pieces = module._pieces(x.detach(), 3, 2, 51, module._Gelu())
    assert len(list(pieces)) == 2 * 9                           # 51 = 8 * 6 + 3
    for whole, pieces in zip(*results):
        if whole is not None or pieces is not None:
            torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5)


def test_tap_groups_read_the_input_in_place_and_copy_only_the_weight(tap_groups):
    x = torch.randn(2, 41, 16, requires_grad=True)
    w = torch.randn(8, 16, 3, requires_grad=True)
    with torch.profiler.profile(record_shapes=True) as prof:
        row_conv(x, w, 2).sum().backward()
    copied = [math.prod(e.input_shapes[0]) for e in prof.events()
              if e.name in ("aten::copy_", "aten::clone") and e.input_shapes]
    assert copied and max(copied) <= w.numel()          # the taps-last weight, nothing larger
