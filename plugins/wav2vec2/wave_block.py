"""The conv encoder's first block, computed from the waveform piece by piece (fp32, CPU).

The first block of wav2vec 2.0's conv stack turns the one-channel waveform into C channels
at a fifth of the sample rate: 64 MB per 10 s of audio at BASE, the largest tensor of the
encoder. The second block's :func:`~.row_conv.row_conv_of` reads that block's activation
through a :class:`WaveBlock` instead: each piece of rows it convolves (at most 16 MiB) is
one product of the waveform's windows ``[n, k]`` with the block's weight, then the block's
norm and GELU. The whole output is never written, so the process takes no fresh pages from
the kernel for it either (on the virtual machines measured, first-touch page faults cost
about 15 ms per 64 MB, more than the product). In training only the waveform's windows (a
view) and, for a GroupNorm, ``[B, C]`` statistics are kept for backward, and the gradient
at the activation also comes in pieces (:meth:`WaveBlock.backward_`).

A GroupNorm over time needs no pass over the output for its statistics: the convolution is
linear in the windows, so each channel's mean is its weight row times the windows' mean,
and its variance the weight row's quadratic form with the windows' ``[k, k]`` covariance
(computed in fp64). The norm's scale folds into the weight and its shift into the
product's bias. The bias of the convolution cancels in the norm.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: frames per piece of the backward's pass over the gradient (16 MiB at 512 fp32 channels)
CHUNK_FRAMES = 8192


class WaveBlock:
    """``GELU(norm(conv(wave) + bias))`` of a one-channel first conv block without dropout,
    as :func:`~.row_conv.row_conv_of`'s activation of the waveform's windows.

    ``wave`` ``[B, S]``; ``weight`` ``[C, 1, k]``; ``norm`` a ``GroupNorm(C, C)`` (over each
    utterance's time), a ``LayerNorm(C)`` (over channels) or None. :attr:`windows`
    ``[B, T, k]`` (a view, ``T = (S - k) // stride + 1``) are the rows it activates:
    ``self(b, windows[b, i:j])`` is rows ``i:j`` of utterance ``b``'s activation ``[j - i, C]``.
    With a norm, :meth:`backward_` gives the gradients of the block's parameters.
    """

    @torch.no_grad()
    def __init__(self, wave: Tensor, weight: Tensor, bias: Tensor | None, stride: int,
                 norm: nn.Module | None) -> None:
        self._parameters = (weight, bias, getattr(norm, "weight", None),
                            getattr(norm, "bias", None))
        channels, _, kernel = weight.shape
        self.windows = wave.unfold(-1, kernel, stride)                       # [B, T, k]
        self.width = channels
        self.flat = weight.reshape(channels, kernel)                         # [C, k]
        self.has_bias = bias is not None
        self.layer_norm = norm if isinstance(norm, nn.LayerNorm) else None
        self.group_norm = norm if isinstance(norm, nn.GroupNorm) else None
        if self.group_norm is not None:
            self._moments()
            scale = self.rstd * self.group_norm.weight.double()              # [B, C]
            self.weight = (self.flat.t()[None] * scale[:, None]).to(wave.dtype)  # [B, k, C]
            self.shift = (self.group_norm.bias.double() - self.mean * scale).to(wave.dtype)
        else:
            self.weight = self.flat.t().expand(len(wave), kernel, channels)
            self.shift = (bias if bias is not None else self.flat.new_zeros(channels)) \
                .expand(len(wave), channels)

    def parameters(self) -> tuple[Tensor | None, ...]:
        """The conv's weight and bias and the norm's weight and bias (None where absent)."""
        return self._parameters

    def _moments(self) -> None:
        """fp64 statistics of the convolution without its bias, ``flat @ w``, over each
        utterance's windows ``w``: the windows' mean ``[B, k]`` and covariance ``[B, k, k]``,
        and per channel the mean and ``1 / sqrt(var + eps)`` ``[B, C]``."""
        windows = self.windows.double()
        self.window_mean = windows.mean(1)                                   # [B, k]
        centred = windows - self.window_mean[:, None]
        self.covariance = centred.transpose(1, 2) @ centred / windows.shape[1]
        w = self.flat.double().t()                                           # [k, C]
        variance = ((self.covariance @ w) * w).sum(1)                        # [B, C]
        self.mean = self.window_mean @ w
        self.rstd = (variance + self.group_norm.eps).rsqrt()

    def __call__(self, b: int, rows: Tensor) -> Tensor:
        """The activation ``[n, C]`` of utterance ``b``'s windows ``rows`` ``[n, k]``."""
        out = torch.addmm(self.shift[b], rows, self.weight[b])
        if self.layer_norm is not None:
            norm = self.layer_norm
            out = F.layer_norm(out, out.shape[-1:], norm.weight, norm.bias, norm.eps)
        return torch.ops.aten.gelu_(out)

    def backward_(self, grad_rows: Callable[[int, int, int], Tensor]
                  ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """The gradients of the conv's weight ``[C, 1, k]`` and bias, and of the norm's
        weight and bias ``[C]``, from the gradient at the activation, which
        ``grad_rows(b, lo, hi)`` gives as a new ``[hi - lo, C]`` tensor for rows ``lo:hi`` of
        utterance ``b`` (it is overwritten): the whole gradient never exists either. One
        pass, ``CHUNK_FRAMES`` frames at a time, rebuilding the norm's output from the
        windows. Needs a norm (a GroupNorm or an affine LayerNorm)."""
        if self.group_norm is not None:
            return self._group_norm_backward(grad_rows)
        if self.layer_norm is not None:
            return self._layer_norm_backward(grad_rows)
        raise NotImplementedError("WaveBlock trains only a first block with a norm")

    def _layer_norm_backward(self, grad_rows: Callable[[int, int, int], Tensor]
                             ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """Frame by frame: the LayerNorm's backward over channels, then the conv's weight
        gradient as the product with the windows."""
        batch, steps, kernel = self.windows.shape
        norm = self.layer_norm
        grad_w = self.windows.new_zeros(self.width, kernel)
        grad_b, grad_gamma, grad_beta = (self.windows.new_zeros(self.width) for _ in range(3))
        for b in range(batch):
            for lo in range(0, steps, CHUNK_FRAMES):
                rows = self.windows[b, lo:lo + CHUNK_FRAMES]
                y = torch.addmm(self.shift[b], rows, self.weight[b])          # [n, C]
                var, mean = torch.var_mean(y, -1, correction=0, keepdim=True)
                rstd = (var + norm.eps).rsqrt_()
                x_hat = y.sub_(mean).mul_(rstd)
                gs = grad_rows(b, lo, lo + len(rows))
                z = torch.addcmul(norm.bias, x_hat, norm.weight)
                torch.ops.aten.gelu_backward.grad_input(gs, z, grad_input=gs)   # at the norm
                grad_beta += gs.sum(0)
                grad_gamma += torch.mul(gs, x_hat, out=z).sum(0)
                d = gs.mul_(norm.weight)                                      # at x̂
                # dy = rstd (d - mean_c(d) - x̂ mean_c(d x̂)), per frame
                dots = torch.mul(d, x_hat, out=z).mean(-1, keepdim=True)
                dy = d.sub_(d.mean(-1, keepdim=True)).sub_(x_hat.mul_(dots)).mul_(rstd)
                grad_w.addmm_(dy.t(), rows)
                grad_b += dy.sum(0)
        return (grad_w.view(self.width, 1, kernel), grad_b if self.has_bias else None,
                grad_gamma, grad_beta)

    def _group_norm_backward(self, grad_rows: Callable[[int, int, int], Tensor]
                             ) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """Sums over time of ``g`` (the gradient at the norm), ``g · x̂`` and
        ``g (w - mean(w))ᵀ``. The norm's backward,
        ``dy = rstd · γ · (g - mean_t(g) - x̂ · mean_t(g · x̂))``, summed against the windows,
        then needs only those sums and the windows' covariance (``Σ_t x̂_t (w_t - m)ᵀ`` is
        ``rstd · (flat @ covariance) · T``). The conv bias cancels in the norm: its gradient
        is zero."""
        batch, steps, kernel = self.windows.shape
        channels, dtype = self.width, self.windows.dtype
        gamma, beta = self.group_norm.weight.to(dtype), self.group_norm.bias.to(dtype)
        unit = self.flat.t().to(dtype)[None] * self.rstd.to(dtype)[:, None]  # [B, k, C]
        unit_shift = (-self.mean * self.rstd).to(dtype)                     # [B, C]
        g_sum = torch.zeros(batch, channels, dtype=torch.float64)
        gx_sum = torch.zeros_like(g_sum)
        g_windows = torch.zeros(batch, channels, kernel, dtype=torch.float64)
        for b in range(batch):
            g_w = self.windows.new_zeros(channels, kernel)                   # [C, k]
            mean_w = self.window_mean[b].to(dtype)
            for lo in range(0, steps, CHUNK_FRAMES):
                hi = min(lo + CHUNK_FRAMES, steps)
                rows = self.windows[b, lo:hi]
                x_hat = torch.addmm(unit_shift[b], rows, unit[b])            # [n, C]
                z = torch.addcmul(beta, x_hat, gamma)
                gs = grad_rows(b, lo, hi)
                torch.ops.aten.gelu_backward.grad_input(gs, z, grad_input=gs)   # at the norm
                g_sum[b] += gs.sum(0)
                gx_sum[b] += torch.mul(gs, x_hat, out=z).sum(0)
                g_w.addmm_(gs.t(), rows - mean_w)
            g_windows[b] = g_w
        scale = self.rstd * self.group_norm.weight.double()                  # [B, C]
        through_stats = (gx_sum * self.rstd)[..., None] \
            * (self.flat.double()[None] @ self.covariance)                  # [B, C, k]
        grad_weight = (scale[..., None] * (g_windows - through_stats)).sum(0)    # [C, k]
        grad_bias = torch.zeros(channels, dtype=dtype) if self.has_bias else None
        return (grad_weight.to(dtype).view(channels, 1, -1), grad_bias,
                gx_sum.sum(0).to(dtype), g_sum.sum(0).to(dtype))
