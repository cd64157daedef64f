"""Reading fairseq checkpoints of any architecture without fairseq: the pickled config (``cfg``
or, in older files, the flat ``args`` Namespace) as plain dicts, the conv layer lists fairseq
writes as Python expressions, and a look at a file's pickle strings that loads no tensor
(for detection)."""

from __future__ import annotations

import ast
import operator
import pickletools
import zipfile
from pathlib import Path
from typing import Any, Mapping

from torch import Tensor

from w2v.errors import DataError, UserError

from .unpickle import load_checkpoint, to_plain

_OPS = {ast.Add: operator.add, ast.Mult: operator.mul}


def parse_conv_layers(text: Any, source: str) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` (``"[(512, 10, 5)] + [(512, 3, 2)] * 4 + ..."``),
    evaluated safely: only list/tuple literals, integers, ``+`` and ``*``."""
    if isinstance(text, (list, tuple)):
        value: Any = text
    else:
        def ev(node: ast.AST) -> Any:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, int):
                return node.value
            if isinstance(node, (ast.List, ast.Tuple)):
                items = [ev(e) for e in node.elts]
                return items if isinstance(node, ast.List) else tuple(items)
            if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
                return _OPS[type(node.op)](ev(node.left), ev(node.right))
            raise ValueError(ast.dump(node))

        try:
            value = ev(ast.parse(str(text), mode="eval"))
        except (SyntaxError, ValueError, TypeError):
            raise UserError(f"{source}: cannot read conv_feature_layers {text!r}.") from None
    try:
        return [(int(d), int(k), int(s)) for d, k, s in value]
    except (TypeError, ValueError):
        raise UserError(f"{source}: conv_feature_layers {text!r} is not a list of "
                        f"(dim, kernel, stride).") from None


def read_fairseq_checkpoint(path: Any) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(model state dict, plain config)``; the config has ``model`` and ``task`` sections
    (built from ``args`` for legacy checkpoints)."""
    raw = load_checkpoint(path)
    if not isinstance(raw, dict) or "model" not in raw:
        raise DataError(f"{path}: not a fairseq checkpoint (no `model` entry).")
    state = raw["model"]
    if raw.get("cfg") is not None:
        cfg = to_plain(raw["cfg"])
    elif raw.get("args") is not None:
        cfg = legacy_config(to_plain(raw["args"]))
    else:
        raise DataError(f"{path}: the fairseq checkpoint has neither `cfg` nor `args`; its "
                        f"architecture cannot be known.")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise DataError(f"{path}: the checkpoint's config has no `model` section.")
    return dict(state), cfg


def legacy_config(args: Mapping[str, Any]) -> dict[str, Any]:
    """An ``args`` Namespace (flat) as ``{model: ..., task: ...}`` with ``_name`` set from ``arch``."""
    args = dict(args)
    model = {**args, "_name": args.get("arch", args.get("_name"))}
    if isinstance(args.get("w2v_args"), dict):
        model["w2v_args"] = legacy_config(args["w2v_args"])
    return {"model": model, "task": {"normalize": args.get("normalize", False),
                                     "sample_rate": args.get("sample_rate", 16000)}}


def pickle_of(p: Path, head: int = 1 << 24) -> bytes | None:
    """The pickle of a torch zip checkpoint (``data.pkl``), else the file's first ``head``
    bytes; None for a zip without a pickle. Tensors are never loaded."""
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            pkl = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return None if pkl is None else z.read(pkl)
    return p.read_bytes()[:head]


def pickle_strings(data: bytes) -> set[bytes]:
    """Every string in a pickle (raises on bytes that are not one pickle)."""
    return {arg.encode() if isinstance(arg, str) else arg
            for _, arg, _ in pickletools.genops(data) if isinstance(arg, (str, bytes))}
