"""Load fairseq checkpoints without fairseq or omegaconf installed.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``, which
rejects the ``argparse.Namespace`` / omegaconf objects fairseq pickles next to
the weights. :func:`load_checkpoint` runs ``torch.load`` with a restricted
unpickler instead: tensors, plain containers and a few safe builtins load as
themselves; every other class (``argparse.Namespace``, omegaconf
``DictConfig``/``ListConfig``/nodes/metadata, fairseq enums and dataclasses,
``typing`` objects, ...) becomes an inert :class:`StandIn` that only records
its constructor arguments and pickled state. Nothing from the file is ever
called, so a malicious pickle cannot run code. The unpickler also refuses to
set state on anything but plain data: pickle's BUILD (``__setstate__`` or
attribute assignment) reaches only stand-ins, the attribute dict of
``OrderedDict``-like containers (a state dict's ``_metadata``) and numpy
arrays; item and append opcodes reach only dicts, lists, sets and stand-ins.
So a crafted file cannot patch a class or function of the running process
(``setattr(collections.Counter, 'most_common', ...)``). :func:`to_plain` then
turns the stand-ins into dicts, lists and scalars.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import types
from typing import Any

import torch

from w2v.errors import DataError

from .malformed import first_line

_SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool",
                  "str", "bytes", "bytearray", "slice", "range", "object"}
_SAFE_NUMPY = {"_reconstruct", "scalar", "ndarray", "dtype"}


class StandIn:
    """An inert replacement for a class the checkpoint names; see the module docstring.

    ``_w2v_origin`` is the class's ``module.name``; ``_args`` the constructor arguments
    (enum members carry their value here); ``_state`` the pickled state (a dict for
    dataclasses, ``Namespace`` and omegaconf containers).
    """

    _w2v_origin = "?"
    _args: tuple = ()
    _state: Any = None
    _items: Any = None  # what item/append opcodes added (a pickled dict or list subclass)

    def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
        obj = object.__new__(cls)
        obj._args, obj._state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        if self._items is None:
            self._items = {}
        if not isinstance(self._items, dict):
            raise pickle.UnpicklingError(f"{self!r} gets both items and list entries")
        self._items[key] = value

    def append(self, value: Any) -> None:
        if self._items is None:
            self._items = []
        if not isinstance(self._items, list):
            raise pickle.UnpicklingError(f"{self!r} gets both items and list entries")
        self._items.append(value)

    def __repr__(self) -> str:
        return f"<stand-in for {self._w2v_origin}>"


_STAND_INS: dict[str, type] = {}


def stand_in(module: str, name: str) -> type:
    origin = f"{module}.{name}"
    if origin not in _STAND_INS:
        _STAND_INS[origin] = type(name, (StandIn,), {"_w2v_origin": origin})
    return _STAND_INS[origin]


def _torch_globals() -> dict[str, Any]:
    try:
        from torch import _weights_only_unpickler

        return dict(_weights_only_unpickler._get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - older/newer torch layouts
        import torch._utils as tu

        return {f"torch._utils.{n}": getattr(tu, n) for n in dir(tu) if n.startswith("_rebuild")}


#: Containers whose instances may receive an attribute dict from BUILD (exact types).
_ATTRIBUTE_CONTAINERS = (collections.OrderedDict, collections.defaultdict, collections.Counter)


def _refuse(action: str, target: Any) -> pickle.UnpicklingError:
    what = f"class {target.__module__}.{target.__qualname__}" if isinstance(target, type) \
        else f"a {type(target).__module__}.{type(target).__qualname__} object"
    return pickle.UnpicklingError(f"the file {action} {what}; a checkpoint only needs plain data, "
                                  f"so w2v refuses to load it")


def _numpy_data(obj: Any) -> bool:
    """A numpy array or dtype instance (their ``__setstate__`` only fills in data)."""
    import numpy as np

    return type(obj) is np.ndarray or (isinstance(obj, np.dtype) and not isinstance(obj, type))


class RestrictedUnpickler(pickle._Unpickler):
    """Resolves only safe globals (everything else becomes a :class:`StandIn`) and builds only
    plain data. The pure-Python unpickler, so that BUILD and the container opcodes can be
    restricted; a checkpoint's pickle is small (tensor data lives beside it)."""

    _torch = None
    dispatch = dict(pickle._Unpickler.dispatch)

    def load(self) -> Any:
        try:
            return super().load()
        except KeyError as exc:  # the pure-Python unpickler's word for a bad opcode or memo id
            raise pickle.UnpicklingError(f"malformed pickle: no opcode or memo entry "
                                         f"{exc.args[0]!r}") from None

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, StandIn):
            inst.__setstate__(state)
        elif type(inst) in _ATTRIBUTE_CONTAINERS:
            if isinstance(state, tuple) and len(state) == 2 and not state[1]:
                state = state[0]
            if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
                raise _refuse("sets non-attribute state on", inst)
            vars(inst).update(state)
        elif _numpy_data(inst):
            inst.__setstate__(state)
        else:
            raise _refuse("sets the state of", inst)

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._item_target("sets items of")[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._item_target("sets items of")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def load_append(self) -> None:
        value = self.stack.pop()
        self._list_target().append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self._list_target()
        for item in items:
            target.append(item)

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise _refuse("adds set members to", target)
        target.update(items)

    def _item_target(self, action: str) -> Any:
        target = self.stack[-1]
        if isinstance(target, (StandIn, dict)):  # instances only: a class is neither
            return target
        raise _refuse(action, target)

    def _list_target(self) -> Any:
        target = self.stack[-1]
        if isinstance(target, (StandIn, list)):
            return target
        raise _refuse("appends to", target)

    for _op, _fn in ((pickle.BUILD, load_build), (pickle.SETITEM, load_setitem),
                     (pickle.SETITEMS, load_setitems), (pickle.APPEND, load_append),
                     (pickle.APPENDS, load_appends), (pickle.ADDITEMS, load_additems)):
        dispatch[_op[0]] = _fn
    del _op, _fn

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._torch is None:
            RestrictedUnpickler._torch = _torch_globals()
        found = RestrictedUnpickler._torch.get(f"{module}.{name}")
        if found is not None:
            return found
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(__import__("builtins"), name)
        if module == "collections" and name in ("OrderedDict", "defaultdict", "Counter"):
            return getattr(__import__("collections"), name)
        if (module, name) in (("copyreg", "_reconstructor"), ("_codecs", "encode")):
            return getattr(__import__(module), name)
        if module == "torch" and re.fullmatch(r"[a-z0-9]+", name) and \
                isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy") \
                and name in _SAFE_NUMPY:
            import importlib

            return getattr(importlib.import_module(module), name)
        return stand_in(module, name)


def _restricted_load(file, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


#: A pickle-module look-alike for ``torch.load(pickle_module=...)``.
restricted_pickle = types.ModuleType("w2v_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.loads = lambda data, **kw: _restricted_load(io.BytesIO(data), **kw)
restricted_pickle.__name__ = "w2v_restricted_pickle"


def load_checkpoint(path: Any) -> Any:
    """``torch.load`` through the restricted unpickler, on CPU. A file that is missing,
    truncated, corrupted or refused raises a one-line :class:`~w2v.errors.DataError`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=restricted_pickle)
    except FileNotFoundError:
        raise DataError(f"{path}: no such checkpoint file.") from None
    except Exception as exc:  # a damaged pickle fails in any of a dozen ways
        raise DataError(f"{path}: cannot read it as a PyTorch checkpoint ({first_line(exc)}).",
                        hint="The file is truncated, corrupted or not a checkpoint.") from None


_OMEGA_CONTAINERS = ("omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig")


def to_plain(obj: Any) -> Any:
    """Stand-ins (omegaconf containers and nodes, ``Namespace``, enums, dataclasses) to
    dicts, lists and scalars; tensors and plain values pass through."""
    if isinstance(obj, StandIn):
        origin, state = obj._w2v_origin, obj._state
        if origin in _OMEGA_CONTAINERS or (isinstance(state, dict) and "_content" in state
                                           and origin.startswith("omegaconf.")):
            return to_plain(state.get("_content") if isinstance(state, dict) else None)
        if origin.startswith("omegaconf.") and isinstance(state, dict) and "_val" in state:
            return to_plain(state["_val"])
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}                    # (dict, slots) state
        if isinstance(state, dict):
            return {k: to_plain(v) for k, v in state.items()}
        if state is None and obj._items is not None:                     # dict / list subclass
            return to_plain(obj._items)
        if len(obj._args) == 1 and state is None:                        # enum member
            return to_plain(obj._args[0])
        if not obj._args and state is None:
            return None
        return repr(obj)
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj) if isinstance(obj, list) else \
            tuple(to_plain(v) for v in obj)
    return obj


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def resolve(value: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """``"${task.normalize}"`` -> the value at that path of ``root`` (None if absent)."""
    if isinstance(value, str) and depth < 8:
        m = _INTERPOLATION.match(value)
        if m:
            node: Any = root
            for part in m.group(1).split("."):
                if not isinstance(node, dict) or part not in node:
                    return None
                node = node[part]
            return resolve(node, root, depth + 1)
    return value
