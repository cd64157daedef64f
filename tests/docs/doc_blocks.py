"""The fenced ```bash blocks of the README and docs/*.md, with the `<!-- not-run: reason -->`
comment that may stand right above a block, among other HTML comments there, or a first line
``# not-run: reason`` inside it (the block is then shown, not run)."""

from __future__ import annotations

import re
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```bash[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_RUN = re.compile(r"^<!--\s*not-run:(.*?)-->\s*$")
IN_BLOCK = re.compile(r"^#\s*not-run:(.*)$", re.M)


@attrs.frozen
class Block:
    """One block: its file, first line (of the fence), text and not-run reason (None: runs)."""

    path: Path
    line: int
    text: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def bash_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        reason = None
        for before in reversed(text[:m.start()].rstrip("\n").split("\n")):
            before = before.strip()           # the HTML comments right above the fence
            if not (before.startswith("<!--") and before.endswith("-->")):
                break
            marker = NOT_RUN.match(before)
            reason = marker.group(1).strip() if marker else reason
        first = IN_BLOCK.match(m.group(1))       # or the block's own first line
        reason = first.group(1).strip() if first else reason
        blocks.append(Block(path=path, line=text.count("\n", 0, m.start()) + 1,
                            text=m.group(1), not_run=reason))
    return blocks


def all_blocks() -> list[Block]:
    return [b for path in doc_files() for b in bash_blocks(path)]
