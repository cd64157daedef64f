"""Activation checkpointing of one block: keep its input, recompute its inside in backward.

:func:`recomputed` runs ``block(*args)`` under :func:`torch.utils.checkpoint.checkpoint`
(``use_reentrant=False``): the activations inside the block are dropped after the
forward pass and computed again when backward needs them, trading about one more
forward of the block for its activation memory. Dropout draws the same masks in the
recomputation (the random state is saved and restored), and running statistics
(BatchNorm's ``running_mean``/``running_var``/``num_batches_tracked``) are put back after
it, so they advance once per forward, as without checkpointing. Gradients are those of
the plain call, up to rounding.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def _running_stats_kept(block: Callable[..., Any]) -> Iterator[None]:
    """Restores the running-statistics buffers of ``block``'s norms on exit (``block``: a
    module, or a method of one)."""
    owner = block if isinstance(block, nn.Module) else getattr(block, "__self__", None)
    modules = owner.modules() if isinstance(owner, nn.Module) else ()
    saved = [(buf, buf.clone()) for m in modules
             if isinstance(m, nn.modules.batchnorm._NormBase) and m.training
             for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
             if buf is not None]
    try:
        yield
    finally:
        for buf, value in saved:
            buf.copy_(value)


def recomputed(block: Callable[..., Tensor], *args: Any, **kwargs: Any) -> Tensor:
    """``block(*args, **kwargs)``, its activations recomputed in backward (see the module
    docstring)."""
    return checkpoint(block, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _running_stats_kept(block)),
                      **kwargs)
