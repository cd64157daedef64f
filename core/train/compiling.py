"""``trainer.compile``: regional ``torch.compile`` with a fallback to eager mode.

A model part that offers ``compile_regions() -> list[nn.Module]`` (the Transformer
context network: its blocks) gets those regions compiled, one by one; identical
blocks share one compiled graph, so compile time is that of one block, not of the
whole network. A part without it is compiled whole. Regions compile with
``dynamic=True``: crop lengths and batch sizes change from batch to batch, and a
symbolic length keeps the graphs to one per variant (padded or not, training or
evaluation) instead of one per length.

``nn.Module.compile`` keeps parameter names, so checkpoints are unaffected. Where
torch.compile cannot work (no dynamo on this Python, no C++ compiler for inductor,
an unsupported operation), the first failing call warns once and every compiled
region runs eagerly from then on.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


def _compile_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    try:
        from torch._dynamo.exc import TorchDynamoException
        errors.append(TorchDynamoException)
    except ImportError:  # pragma: no cover - very old torch
        pass
    try:
        from torch._inductor.exc import CppCompileError
        errors.append(CppCompileError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


class CompiledRegions:
    """The regions compiled for one model, with their shared fallback and timings.

    Compile time is paid in the first update (and the first of each new variant: a
    padded batch, validation); the trainer's first-update line includes it.

    Attributes:
        names: what was compiled (``aggregator (12 blocks)``, or a whole part's name).
        failed: the first compile error's message, once the regions fell back to eager.
    """

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.names: list[str] = []
        self.modules: list[nn.Module] = []
        self.failed: str | None = None

    def add(self, name: str, modules: Sequence[nn.Module]) -> None:
        self.names.append(name)
        for module in modules:
            self._compile(module)

    def _compile(self, module: nn.Module) -> None:
        module.compile(dynamic=True)
        compiled = module._compiled_call_impl
        errors = _compile_errors()

        def call(*args, **kwargs):
            if self.failed is not None:
                return module._call_impl(*args, **kwargs)
            try:
                return compiled(*args, **kwargs)
            except errors as exc:
                self._fall_back(exc)
                return module._call_impl(*args, **kwargs)

        module._compiled_call_impl = call
        self.modules.append(module)

    def _fall_back(self, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        self.failed = first
        for module in self.modules:
            module._compiled_call_impl = None
        self.warn(f"trainer.compile: torch.compile failed ({type(exc).__name__}: {first}); "
                  f"training continues without compilation.")


def compile_model(model: nn.Module, warn: Callable[[str], None],
                  names: Sequence[str] = ("encoder", "aggregator")) -> CompiledRegions:
    """Compile the regions of ``model``'s named parts (see the module docstring); the whole
    model when it has none of them."""
    regions = CompiledRegions(warn)
    dynamo_ok = getattr(torch._dynamo, "is_dynamo_supported", lambda: True)
    try:
        supported = dynamo_ok() is not False
    except RuntimeError:
        supported = False
    if not supported:
        warn("trainer.compile: torch.compile is not supported by this Python / torch; "
             "training runs eagerly.")
        return regions
    parts = [(n, getattr(model, n)) for n in names if isinstance(getattr(model, n, None), nn.Module)]
    if not parts:
        parts = [("model", model)]
    for name, part in parts:
        if hasattr(part, "compile_regions"):
            blocks = list(part.compile_regions())
            if blocks:
                regions.add(f"{name} ({len(blocks)} blocks)", blocks)
        else:
            regions.add(name, [part])
    return regions
