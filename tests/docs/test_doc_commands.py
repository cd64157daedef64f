"""Every command in a ```bash block of the README and docs/*.md runs here at tiny size, or the
block is marked `<!-- not-run: reason -->` on the line before it, saying why it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc_blocks import ROOT, all_blocks, bash_blocks  # noqa: E402

#: What a block cannot do in CI: install packages, start several processes or nodes, reach
#: data outside the checkout. A block with one of these must be marked not-run.
NEEDS_MORE_THAN_CI = ("pip install", "torchrun", "srun ", "/data/", "/shared/", "pytest")

RUNNABLE = [b for b in all_blocks() if b.not_run is None]


def test_blocks_that_cannot_run_here_are_marked_with_a_reason():
    unmarked = [f"{b.where}: `{needs}`" for b in RUNNABLE for needs in NEEDS_MORE_THAN_CI
                if needs in b.text]
    assert not unmarked, ("these ```bash blocks cannot run in CI; put `<!-- not-run: reason -->` "
                          "on the line before each: " + "; ".join(unmarked))
    empty = [b.where for b in all_blocks() if b.not_run == ""]
    assert not empty, f"not-run markers without a reason: {empty}"


def test_the_parser_finds_blocks_and_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- not-run: needs a GPU -->\n```bash\nw2vrun a.yaml\n```\n\n"
                    "```bash\nw2vrun list\n```\n```python\nx = 1\n```\n"
                    "<!-- other -->\n<!-- not-run: long -->\n<!-- test-command -->\n```bash\nb\n```\n"
                    "```bash\n# not-run: needs data\nw2vrun b.yaml\n```\n")
    first, second, third, fourth = bash_blocks(page)
    assert (first.line, first.text, first.not_run) == (4, "w2vrun a.yaml\n", "needs a GPU")
    assert (second.line, second.text, second.not_run) == (8, "w2vrun list\n", None)
    assert third.not_run == "long" and fourth.not_run == "needs data"


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_unmarked_block_runs(block, tmp_path):
    """The block runs with bash -e in a scratch directory where `recipes/` is the checkout's
    (never a block that would install packages or start jobs elsewhere: that one must be
    marked, see the test above)."""
    needs = [n for n in NEEDS_MORE_THAN_CI if n in block.text]
    if needs:
        pytest.fail(f"{block.where}: not run, it needs {needs}; mark it `<!-- not-run: reason -->`")
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "W2V_CACHE": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("W2V_DISABLE_PLUGINS", None)
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.text], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"{block.where}: this ```bash block fails here (exit {proc.returncode}): "
        f"{proc.stderr.strip()[-800:]}\nMake it run at tiny size, or mark it "
        "`<!-- not-run: reason -->` on the line before the block.")
