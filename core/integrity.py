"""Integrity of saved files: a checkpoint whose bytes changed on disk must not load silently.

``torch.save`` writes a zip archive and records a CRC-32 of every member
(``torch.serialization.get_crc32_options()``, on by default), but
``torch.load`` does not check them: a flipped byte in a tensor changes the
weights without any error. :func:`verify_archive` re-reads every member and
compares its CRC before a w2v file is loaded (about as fast as reading the
file once; the page cache then serves ``torch.load``).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

_CHUNK = 1 << 22


def corrupted_member(path: str | Path) -> str | None:
    """The first member of the zip archive ``path`` whose bytes do not match its recorded
    CRC-32 (or ``"the zip directory"`` when the archive cannot be opened), else None.

    Files that are not zip archives (legacy pickles) return None: nothing to verify.
    """
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.CRC == 0 and info.file_size > 0:
                    continue  # written without CRCs (crc32 option off): nothing to compare
                try:
                    with zf.open(info) as member:
                        while member.read(_CHUNK):  # the reader compares the CRC at the end
                            pass
                except zipfile.BadZipFile:
                    return info.filename
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, KeyError,
            NotImplementedError, zlib.error) as exc:
        return f"the zip directory ({type(exc).__name__}: {exc})"
    return None
