"""A grouped 1-d convolution with a long kernel, computed in the frequency domain.

``fft_conv(x [B, D, L], weight [D, C, K], groups G) -> [B, D, L - K + 1]`` (``C = D / G``)
equals ``F.conv1d(x, weight, groups=G)`` (no padding, stride 1) up to fp32 rounding
(relative error about 1e-6). wav2vec 2.0's positional conv (K = 128, G = 16) costs
``B * T * D * C * K * 2`` FLOPs as a convolution, 4.7 G at 2 x 5 s, which oneDNN runs at
half its matrix-product rate on CPU. Here, with ``N >= L`` an even FFT length and
``F = N / 2 + 1`` frequencies:

- the weight's spectrum is a matrix product with a ``[2F, K]`` cosine and sine basis, in a
  ``[F, G, O, C]`` layout that needs no permutation: about ``4 N * D * C * K`` FLOPs,
  independent of the batch;
- per frequency and group, the output spectrum is the ``[O, C]`` spectrum matrix times the
  ``[C, B]`` input spectra, as two batched real products (real and imaginary parts);
- input and output go through ``torch.fft.rfft`` / ``irfft``; ``N >= L`` leaves no wrap-around.

So it pays once the batch holds more output frames than ``N`` (:func:`pays_off`). Backward
reuses the pieces: the input's gradient is the gradient's spectra times the transposed
spectrum matrices, the weight's gradient the cross-spectra times an inverse basis. The
weight's spectrum (57 MB at BASE, 2 x 5 s) is never whole: it is computed, used and
dropped 16 MiB of frequencies at a time, in forward and again in backward, so it is not
kept for backward and the process's heap serves it again (a larger tensor is fresh memory
whose pages fault in on first touch). Only ``x``'s spectra and the weight are saved.
"""

from __future__ import annotations

import functools
import math
from typing import Iterator

import torch
from torch import Tensor

#: the largest slice of the weight's spectrum computed at once
CHUNK_BYTES = 16 << 20


def _smooth(m: int) -> bool:
    """Whether ``m`` has no prime factor above 5."""
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


def fft_length(n: int) -> int:
    """The smallest even ``2^a 3^b 5^c >= n``."""
    m = max(2, n + n % 2)
    while not _smooth(m):
        m += 2
    return m


def pays_off(x: Tensor, kernel: int) -> bool:
    """Whether :func:`fft_conv` should replace ``F.conv1d`` for ``x`` ``[B, D, L]``: on
    CPU in fp32 or fp64 without autocast (bf16 stays oneDNN's), not while compiling, with
    a kernel of at least 32 taps and at least as many output frames in the batch as the
    FFT length (measured on BASE's positional conv, docs/benchmarks.md)."""
    B, _, L = x.shape
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) \
        and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling() \
        and kernel >= 32 and B * (L - kernel + 1) >= fft_length(L)


@functools.lru_cache(maxsize=16)
def _bases(kernel: int, n: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(forward, inverse)``, each ``[2, F, K]``. ``forward`` holds ``cos(2 pi f k / N)`` and
    ``sin(2 pi f k / N)``, so ``forward @ w`` is the conjugate spectrum ``sum_k w[k]
    e^{+2 pi i f k / N}``, real and imaginary parts; ``inverse`` turns a spectrum's real and
    imaginary parts into samples ``0 .. K - 1`` of its inverse real FFT."""
    freqs = torch.arange(n // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * freqs[:, None] * torch.arange(kernel, dtype=torch.float64) / n
    cos, sin = angle.cos(), angle.sin()
    scale = torch.full((n // 2 + 1, 1), 2.0 / n, dtype=torch.float64)
    scale[0] = scale[-1] = 1.0 / n                      # DC and Nyquist count once (N even)
    forward = torch.stack([cos, sin]).to(device, dtype)
    inverse = torch.stack([scale * cos, -scale * sin]).to(device, dtype)
    return forward, inverse


def _freq_chunks(n: int, weight: Tensor) -> Iterator[tuple[int, int]]:
    """Ranges of frequencies whose slice of the weight's spectrum fits ``CHUNK_BYTES``."""
    freqs = n // 2 + 1
    size = max(1, CHUNK_BYTES // (2 * weight[:, :, 0].numel() * weight.element_size()))
    for start in range(0, freqs, size):
        yield start, min(start + size, freqs)


def _spectrum_slice(basis: Tensor, start: int, stop: int, weight: Tensor, groups: int) -> Tensor:
    """``[2, (stop - start) * G, O, C]``: real and imaginary parts of the weight's conjugate
    spectrum at frequencies ``start:stop``, one ``[O, C]`` matrix per frequency and group."""
    D, C, K = weight.shape
    rows = basis[:, start:stop].reshape(-1, K)                         # [2 * f, K]
    return (rows @ weight.reshape(D * C, K).t()).view(2, -1, D // groups, C)


def _to_blocks(z: Tensor, groups: int) -> Tensor:
    """Spectra ``[B, D, F]`` complex -> ``[F * G, D / G, 2B]`` real: real parts, then
    imaginary parts, along the last axis."""
    B, D, F = z.shape
    parts = torch.view_as_real(z).view(B, groups, D // groups, F, 2)
    return parts.permute(3, 1, 2, 4, 0).reshape(F * groups, D // groups, 2 * B)


def _from_blocks(real: Tensor, imag: Tensor, groups: int) -> Tensor:
    """``[F * G, D / G, B]`` real and imaginary parts -> spectra ``[B, D, F]`` complex."""
    FG, rows, B = real.shape
    both = torch.stack([real, imag], dim=-1).view(FG // groups, groups, rows, B, 2)
    return torch.view_as_complex(both.permute(3, 1, 2, 0, 4).reshape(B, groups * rows, -1, 2))


class _FFTConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, groups: int) -> Tensor:
        B, D, L = x.shape
        n = fft_length(L)
        basis, _ = _bases(weight.shape[-1], n, x.device, x.dtype)
        w = weight.to(x.dtype)
        xs = _to_blocks(torch.fft.rfft(x, n=n), groups)                # [F * G, C, 2B]
        real = x.new_empty(xs.shape[0], D // groups, B)
        imag = torch.empty_like(real)
        for start, stop in _freq_chunks(n, weight):
            v = _spectrum_slice(basis, start, stop, w, groups)
            part = slice(start * groups, stop * groups)
            pr, pi = v[0] @ xs[part], v[1] @ xs[part]                  # [f * G, O, 2B]
            torch.sub(pr[..., :B], pi[..., B:], out=real[part])
            torch.add(pr[..., B:], pi[..., :B], out=imag[part])
        ctx.save_for_backward(xs, weight)
        ctx.groups, ctx.n, ctx.length = groups, n, L
        return torch.fft.irfft(_from_blocks(real, imag, groups), n=n)[..., :L - weight.shape[-1] + 1]

    @staticmethod
    def backward(ctx, grad: Tensor):
        xs, weight = ctx.saved_tensors
        groups, n, L = ctx.groups, ctx.n, ctx.length
        D, C, K = weight.shape
        B = grad.shape[0]
        basis, inverse = _bases(K, n, grad.device, grad.dtype)
        gs = _to_blocks(torch.fft.rfft(grad, n=n), groups)             # [F * G, O, 2B]
        w = weight.to(grad.dtype)
        want_x, want_w = ctx.needs_input_grad[:2]
        real = imag = grad_w = None
        if want_x:
            real = grad.new_empty(gs.shape[0], C, B)
            imag = torch.empty_like(real)
        if want_w:
            grad_w = grad.new_zeros(D * C, K)
            swapped = torch.cat([xs[..., B:], -xs[..., :B]], dim=-1).mT   # [F * G, 2B, C]
        for start, stop in _freq_chunks(n, weight):
            part = slice(start * groups, stop * groups)
            if want_x:                  # the spectrum matrices transposed (not conjugated)
                v = _spectrum_slice(basis, start, stop, w, groups)
                p, q = v[0].mT @ gs[part], v[1].mT @ gs[part]          # [f * G, C, 2B]
                torch.add(p[..., :B], q[..., B:], out=real[part])
                torch.sub(p[..., B:], q[..., :B], out=imag[part])
                del v
            if want_w:                  # cross-spectra: conj(grad) times x, summed over B
                cross = grad.new_empty(2, (stop - start) * groups, D // groups, C)
                torch.bmm(gs[part], xs[part].mT, out=cross[0])
                torch.bmm(gs[part], swapped[part], out=cross[1])
                grad_w.addmm_(cross.view(2 * (stop - start), D * C).t(),
                              inverse[:, start:stop].reshape(-1, K))
        grad_x = None if not want_x else \
            torch.fft.irfft(_from_blocks(real, imag, groups), n=n)[..., :L]
        if grad_w is not None:
            grad_w = grad_w.view(D, C, K).to(weight.dtype)
        return grad_x, grad_w, None


def fft_conv(x: Tensor, weight: Tensor, groups: int) -> Tensor:
    """``F.conv1d(x, weight, groups=groups)`` for ``x`` ``[B, D, L]``, ``weight``
    ``[D, D / groups, K]``, through the FFT (see the module docstring)."""
    return _FFTConv.apply(x, weight, groups)
