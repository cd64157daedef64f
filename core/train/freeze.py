"""Freezing components: for the whole run (``freeze``) or the first N updates (``freeze_updates``).

A frozen component's parameters stop requiring gradients (so the optimizer,
which skips parameters without a gradient, leaves them and their moments
untouched). A component that knows how to skip its own backward graph is told
too: it may define ``set_frozen(bool)`` or a boolean ``frozen`` attribute and
then run its forward under ``torch.no_grad()`` (fairseq's
``freeze_finetune_updates``), which saves the memory of its activations.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from torch import nn

from ..errors import ConfigError, did_you_mean
from .config import resolve_length


def _submodule(model: nn.Module, objective: nn.Module, name: str, key: str) -> nn.Module:
    root, path = (objective, name[len("objective."):]) if name.startswith("objective.") \
        else (objective, "") if name == "objective" else (model, name)
    try:
        module = root.get_submodule(path) if path else root
    except AttributeError:
        module = None
    if module is None or not isinstance(module, nn.Module):
        choices = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
        raise ConfigError(f"`{name}` is not a component of the model.", key=f"{key}.{name}",
                          hint=did_you_mean(name, choices + ["objective"], "components"))
    return module


def set_frozen(module: nn.Module, frozen: bool,
               trainable: Mapping[int, bool] | None = None) -> None:
    """Freeze or unfreeze ``module``: its own flag where it has one, and ``requires_grad``.

    ``trainable`` (parameter id -> requires_grad before any freezing) keeps parameters
    that were never trainable (a fixed codebook, say) frozen when unfreezing.
    """
    if hasattr(module, "set_frozen"):
        module.set_frozen(frozen)
    elif isinstance(getattr(module, "frozen", None), bool):
        module.frozen = frozen
    for p in module.parameters():
        p.requires_grad_(False if frozen else (trainable or {}).get(id(p), True))


class FreezePlan:
    """Which components are frozen at each update.

    Args:
        model, objective: the modules whose components are named.
        always: component names frozen throughout (``encoder``, ``aggregator.layers.0``).
        until: ``{name: N}``: frozen while fewer than N updates are done (N may be a
            fraction of ``max_updates``).
        max_updates: resolves fractional N.
    """

    def __init__(self, model: nn.Module, objective: nn.Module, always: Sequence[str],
                 until: Mapping[str, int | float], max_updates: int) -> None:
        self.always = {n: _submodule(model, objective, n, "freeze") for n in always}
        self.until = {n: (_submodule(model, objective, n, "freeze_updates"),
                          resolve_length(v, max_updates, f"freeze_updates.{n}"))
                      for n, v in until.items()}
        self._trainable = {id(p): p.requires_grad for m, _ in self.until.values()
                           for p in m.parameters()}
        self._state: dict[str, bool] = {}

    @property
    def needs_unused_parameter_search(self) -> bool:
        """DDP must tolerate parameters without gradients while a component is frozen for a
        while (those frozen throughout are left out of DDP altogether)."""
        return any(n > 0 for _, n in self.until.values())

    def prepare_for_ddp(self) -> None:
        """Before DDP registers parameters: components frozen throughout stop requiring
        gradients (DDP ignores them); temporarily frozen ones must still require them."""
        for name, module in self.always.items():
            set_frozen(module, True)
            self._state[name] = True
        for name, (module, _) in self.until.items():
            set_frozen(module, False, self._trainable)
            self._state[name] = False

    def apply(self, update: int) -> list[str]:
        """Set every component's state for ``update``; returns the names that changed."""
        changed = []
        for name, module in self.always.items():
            if self._state.get(name) is not True:
                set_frozen(module, True)
                self._state[name] = True
                changed.append(name)
        for name, (module, n) in self.until.items():
            frozen = update < n
            if self._state.get(name) is not frozen:
                set_frozen(module, frozen, self._trainable)
                self._state[name] = frozen
                changed.append(name)
        return changed

    def frozen_names(self) -> list[str]:
        return [n for n, f in self._state.items() if f]
