"""Total state-dict key mapping and the record of what an import did.

A :class:`KeyMap` is an ordered list of ``(regex, action)`` rules. Every
source key must match a rule (full match, first wins); a key that matches
none is a :class:`~w2v.errors.UserError` naming it. Actions:

* ``"encoder.conv_layers.\\1.conv.\\2"``: a model key (``\\N`` groups expanded);
* ``"objective:final_proj.\\1"``: a loss-time tensor for the objective
  (``project_q``, ``final_proj``, ``target_glu``), kept in the report;
* ``"drop:why"``: dropped on purpose (recorded with the reason);
* ``"error:why"``: a recognised but unsupported part (a UserError).

Importers of every family share it (fairseq, Hugging Face and torchaudio wav2vec 2.0,
fairseq wav2vec 1.0); :func:`w2v.plugins.interop.loading.load_mapped` then copies the mapped
tensors into the model.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

import attrs
from torch import Tensor

from w2v.errors import UserError

@attrs.define(kw_only=True)
class LoadReport:
    """What an import did with every tensor of the source.

    Attributes:
        source: the format and where it came from.
        loaded: source keys whose tensors are now in the model.
        dropped: source key -> why it was dropped on purpose.
        missing: model keys the source did not provide (left at their initial values).
        objective_state: loss-time tensors for the checkpoint's objective, keyed as that
            objective names them (wav2vec 2.0: ``project_q.*``, ``final_proj.*``,
            ``target_glu.*``; wav2vec 1.0: the prediction ``head.*``).
        objective_config: that objective's config fields found in the source.
        notes: anything else worth telling the user.
    """

    source: str
    loaded: list[str] = attrs.field(factory=list)
    dropped: dict[str, str] = attrs.field(factory=dict)
    missing: list[str] = attrs.field(factory=list)
    objective_state: dict[str, Tensor] = attrs.field(factory=dict, repr=False)
    objective_config: dict[str, Any] = attrs.field(factory=dict)
    notes: list[str] = attrs.field(factory=list)

    def summary(self) -> str:
        parts = [f"{self.source}: {len(self.loaded)} tensors loaded"]
        if self.objective_state:
            parts.append(f"{len(self.objective_state)} kept for the objective")
        if self.dropped:
            parts.append(f"{len(self.dropped)} dropped on purpose "
                         f"({', '.join(sorted(set(self.dropped.values())))})")
        if self.missing:
            parts.append(f"{len(self.missing)} left at initial values "
                         f"({', '.join(self.missing[:4])}{', ...' if len(self.missing) > 4 else ''})")
        return "; ".join(parts) + "." + "".join(f" {n}" for n in self.notes)


@attrs.define(kw_only=True)
class MappedState:
    """Model tensors (w2v key -> tensor) with the source key each came from."""

    tensors: dict[str, Tensor] = attrs.field(factory=dict)
    origin: dict[str, str] = attrs.field(factory=dict)


class KeyMap:
    """Ordered ``(regex, action)`` rules; see the module docstring.

    An action may also be a callable ``match -> str``. ``strip`` lists key prefixes
    removed before matching (messages and the report keep the original keys).
    """

    def __init__(self, rules: Iterable[tuple[str, str | Callable[[re.Match], str]]], *,
                 source: str, strip: tuple[str, ...] = ()) -> None:
        self.rules = [(re.compile(p), a) for p, a in rules]
        self.source = source
        self.strip = strip

    def action(self, key: str) -> str | None:
        for prefix in self.strip:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        for pattern, action in self.rules:
            m = pattern.fullmatch(key)
            if m:
                return action(m) if callable(action) else m.expand(action)
        return None

    def apply(self, state: Mapping[str, Tensor], report: LoadReport) -> MappedState:
        out = MappedState()
        for key, value in state.items():
            action = self.action(key)
            if action is None:
                raise UserError(
                    f"{self.source}: unexpected key `{key}` (shape {_shape(value)}); w2v does not "
                    f"know where it belongs, so the import stops rather than lose it.",
                    hint="If the checkpoint comes from a newer or modified architecture, convert it "
                         "with the tool that made it, or report the key.")
            if action.startswith("error:"):
                raise UserError(f"{self.source}: `{key}` belongs to a part w2v does not support: "
                                f"{action[6:]}.")
            if action.startswith("drop:"):
                report.dropped[key] = action[5:]
            elif action.startswith("objective:"):
                report.objective_state[action[10:]] = value
            else:
                if action in out.tensors:
                    raise UserError(f"{self.source}: `{key}` and `{out.origin[action]}` both map "
                                    f"to `{action}`; the checkpoint holds the same tensor twice.")
                out.tensors[action] = value
                out.origin[action] = key
        return out


def _shape(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, Tensor) else type(value).__name__
