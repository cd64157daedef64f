"""fairseq's Adam update rule (``optimizer: adam``), on torch's fused AdamW kernel.

fairseq ``optim/adam.py`` differs from ``torch.optim.AdamW`` in where epsilon
sits. With ``m``, ``v`` the moment averages after ``t`` updates::

    fairseq:  p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    torch:    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

so fairseq's effective epsilon is ``eps / sqrt(1 - b2^t)``: 7x torch's at
update 1 with ``b2 = 0.98``, fading over a few hundred updates. Weight decay
is decoupled (``p -= lr * wd * p`` before the Adam step) and applies to every
parameter the group holds. Results agree with fairseq's loop to float rounding.

Folding that epsilon into the call lets torch's fused AdamW kernel run fairseq's rule: one
pass over each tensor, no temporaries. Where that kernel does not exist (a device or dtype
torch has no fused kernel for) ``torch._foreach_*`` calls do the same arithmetic.

The state per parameter is ``step``, ``exp_avg`` and ``exp_avg_sq``, the same
keys torch's Adam/AdamW use, so a checkpoint written by either loads here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Callable, Iterable

import torch
from torch import Tensor


#: foreach calls take lists of about this many elements, so the ``sqrt(v)`` temporaries
#: stay small (one 16 MB chunk rather than a copy of every moment at once)
_CHUNK_ELEMENTS = 1 << 22


def _chunks(params: list[Tensor], limit: int) -> Iterable[list[Tensor]]:
    """``params`` in consecutive lists of at most ``limit`` elements (or one tensor)."""
    chunk: list[Tensor] = []
    size = 0
    for p in params:
        if chunk and size + p.numel() > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(p)
        size += p.numel()
    if chunk:
        yield chunk


def has_fused_kernel(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch has a fused Adam kernel for tensors of this device and dtype."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices
    return dtype.is_floating_point and device.type in _get_fused_kernels_supported_devices()


class FairseqAdam(torch.optim.Optimizer):
    """Adam with fairseq's epsilon placement and decoupled weight decay on all parameters.

    Args:
        params: parameters or param groups (``lr``, ``betas``, ``eps``, ``weight_decay``
            per group).
        lr: learning rate.
        betas: ``(beta1, beta2)`` moment decay rates.
        eps: added to ``sqrt(v)`` before the bias correction of ``v`` is folded into the
            step size (fairseq), not after (torch).
        weight_decay: decoupled decay, ``p *= 1 - lr * weight_decay`` each update.

    Parameters of one group that have taken the same number of steps are updated
    together: by torch's fused AdamW kernel with epsilon rescaled (on CPU this is about 0.3x
    the time of torch's default AdamW step on wav2vec 2.0 BASE, as ``AdamW(fused=True)``:
    ``tests/benchmarks/bench_fairseq_adam.py``), or by ``torch._foreach_*`` kernels in chunks
    of about 4 M elements where no fused kernel exists. Sparse gradients are refused.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"lr, eps and weight_decay must be >= 0, found {lr}, {eps}, "
                             f"{weight_decay}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), found {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # bucket by (device, dtype, steps taken): one foreach call per bucket
            buckets: dict[tuple, list[Tensor]] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("FairseqAdam does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                elif isinstance(state["step"], Tensor):  # written by torch's Adam/AdamW
                    state["step"] = int(state["step"].item())
                buckets[(p.device, p.dtype, state["step"])].append(p)
            for (device, dtype, steps), params in buckets.items():
                if has_fused_kernel(device, dtype):
                    self._fused_update(params, group, steps + 1)
                else:
                    for chunk in _chunks(params, _CHUNK_ELEMENTS):
                        self._update(chunk, group, steps + 1)
                for p in params:
                    self.state[p]["step"] = steps + 1
        return loss

    def _moments(self, params: list[Tensor]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Gradients (in the parameters' dtype) and the two moment buffers of ``params``."""
        grads = [p.grad if p.grad.dtype == p.dtype else p.grad.to(p.dtype) for p in params]
        return (grads, [self.state[p]["exp_avg"] for p in params],
                [self.state[p]["exp_avg_sq"] for p in params])

    def _fused_update(self, params: list[Tensor], group: dict, step: int) -> None:
        """:meth:`_update` by torch's fused AdamW kernel, whose epsilon sits after the bias
        correction of ``v``: fairseq's ``eps`` is that epsilon times ``sqrt(1 - b2^t)``."""
        beta1, beta2 = group["betas"]
        grads, exp_avgs, exp_avg_sqs = self._moments(params)
        steps = torch.full((), float(step), dtype=torch.float32, device=params[0].device)
        torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], [steps] * len(params),
                            lr=group["lr"], beta1=beta1, beta2=beta2,
                            weight_decay=group["weight_decay"],
                            eps=group["eps"] / math.sqrt(1 - beta2 ** step),
                            amsgrad=False, maximize=False)

    def _update(self, params: list[Tensor], group: dict, step: int) -> None:
        """One update of ``params`` (all at update ``step``, 1-based), in fairseq's order."""
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        grads, exp_avgs, exp_avg_sqs = self._moments(params)

        step_size = lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)    # b1 m + (1 - b1) g
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denom, eps)
        if wd != 0:
            torch._foreach_mul_(params, 1 - wd * lr)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)
