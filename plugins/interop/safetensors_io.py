"""``.safetensors`` files through the ``safetensors`` package (the format's own implementation):
reading goes through its memory-mapped ``safe_open`` (the file is never read whole into a
Python bytes object); a file the package refuses is a one-line
:class:`~w2v.errors.DataError` naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from torch import Tensor

from w2v.errors import DataError

from .malformed import first_line


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a ``.safetensors`` file, on CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as exc:
        raise DataError(f"{path}: not a readable safetensors file ({first_line(exc)}); it is "
                        "truncated or corrupted.") from None


def write_safetensors(tensors: Mapping[str, Tensor], path: str | Path) -> None:
    """Write ``tensors`` (moved to CPU, made contiguous) with ``{"format": "pt"}`` metadata."""
    from safetensors.torch import save_file

    save_file({name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}, str(path),
              metadata={"format": "pt"})
