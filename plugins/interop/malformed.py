"""One-line errors for foreign checkpoints that are truncated, corrupted or edited.

A damaged fairseq ``.pt`` or Hugging Face directory can fail anywhere while it
is read and interpreted (an ``IndexError`` in the unpickler, a ``TypeError`` on a
config value of the wrong type, a ``RuntimeError`` reshaping short tensor data).
:func:`reading` turns any such failure into a :class:`~w2v.errors.DataError`
that names the file, so ``w2v.load_pretrained`` and ``w2vrun transcribe`` stop
with one paragraph and exit 2 instead of a traceback.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from w2v.errors import DataError, UserError


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (torch's errors run over several lines)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextmanager
def reading(source: Any, kind: str) -> Iterator[None]:
    """Re-raise anything but a :class:`UserError` as a DataError about ``source``.

    Args:
        source: the file or directory being imported.
        kind: what it was read as ("fairseq wav2vec 2.0 checkpoint").
    """
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        raise DataError(f"{source}: cannot import it as a {kind} ({first_line(exc)}).",
                        hint="The file is truncated, corrupted or was edited; download or "
                             "export it again.") from None
