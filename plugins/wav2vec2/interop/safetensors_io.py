"""Read and write ``.safetensors`` files without the safetensors package.

The format: an 8-byte little-endian header length, a JSON header mapping each
name to ``{dtype, shape, data_offsets}`` (plus an optional ``__metadata__``),
then the raw little-endian tensor bytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from w2v.errors import DataError

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a ``.safetensors`` file (copied into memory, on CPU)."""
    data = Path(path).read_bytes()
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + size])
    except (struct.error, ValueError) as exc:
        raise DataError(f"{path}: not a safetensors file ({exc}).") from None
    if not isinstance(header, dict):
        raise DataError(f"{path}: not a safetensors file (its header is not a JSON object).")
    body = memoryview(data)[8 + size:]
    out: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None:
                raise DataError(f"{path}: tensor `{name}` has dtype {info['dtype']}, which w2v "
                                f"cannot read.")
            start, end = (int(x) for x in info["data_offsets"])
            shape = [int(n) for n in info["shape"]]
            if not 0 <= start <= end <= len(body):
                raise ValueError(f"its bytes {start}:{end} lie outside the "
                                 f"{len(body)}-byte body")
            flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if end > start \
                else torch.empty(0, dtype=dtype)
            out[name] = flat.reshape(shape)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{path}: tensor `{name}` is malformed ({type(exc).__name__}: "
                            f"{exc}); the file is truncated or corrupted.") from None
    return out


def write_safetensors(tensors: Mapping[str, Tensor], path: str | Path) -> None:
    """Write ``tensors`` (moved to CPU, made contiguous) with ``{"format": "pt"}`` metadata."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name, tensor in tensors.items():
        t = tensor.detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
