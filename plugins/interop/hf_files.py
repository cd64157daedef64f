"""Reading a Hugging Face model directory: ``config.json``, the weights (``model.safetensors``
or ``pytorch_model.bin``, single or sharded with an index) and ``preprocessor_config.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from w2v.errors import DataError

from .safetensors_io import read_safetensors


def read_hf_directory(directory: str | Path) -> tuple[dict[str, Any], dict[str, Tensor],
                                                      dict[str, Any]]:
    """``(config.json, state dict, preprocessor_config.json or {})`` of a model directory."""
    root = Path(directory)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise DataError(f"{root}: no config.json; not a Hugging Face model directory.")
    config = json.loads(config_path.read_text())
    pre_path = root / "preprocessor_config.json"
    pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
    state: dict[str, Tensor] = {}
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (root / single).is_file():
            files = [root / single]
        elif (root / index).is_file():
            weight_map = json.loads((root / index).read_text())["weight_map"]
            files = [root / name for name in dict.fromkeys(weight_map.values())]
        else:
            continue
        for file in files:
            if file.suffix == ".safetensors":
                state.update(read_safetensors(file))
                continue
            try:
                state.update(torch.load(file, map_location="cpu", weights_only=True))
            except Exception as exc:
                raise DataError(f"{file}: cannot read it as PyTorch weights ({type(exc).__name__}"
                                f"): it is truncated, corrupted or holds more than tensors.",
                                hint="Download or export it again.") from None
        return config, state, pre
    raise DataError(f"{root}: no model.safetensors or pytorch_model.bin.")
