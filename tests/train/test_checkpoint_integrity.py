"""Bit rot: a ``model.pt`` or trainer checkpoint whose bytes changed after it was written is
refused (exit 2 naming the file) instead of loading different weights silently."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tiny_run import assert_clean_exit, w2vrun, write_recipe  # noqa: E402
from w2v import load_pretrained  # noqa: E402
from w2v.cli import main  # noqa: E402
from w2v.errors import UserError  # noqa: E402
from w2v.train.checkpoint import CheckpointError, load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrity")
    recipe = write_recipe(root)
    assert main([str(recipe), "--out", str(root / "run")]) == 0
    return root


def flip_tensor_bytes(path: Path, count: int = 400) -> str:
    """Invert ``count`` bytes inside the largest tensor stored in the archive ``path`` (the
    zip structure stays valid); returns the member's name."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        start = info.header_offset + 30 + name_len + extra_len
        count = min(count, info.file_size)
        f.seek(start)
        data = bytes(b ^ 0xFF for b in f.read(count))
        f.seek(start)
        f.write(data)
    return info.filename


def test_model_file_with_flipped_bytes_is_refused_naming_it(trained, tmp_path):
    model_pt = tmp_path / "model.pt"
    shutil.copyfile(trained / "run" / "pretrain" / "model.pt", model_pt)
    member = flip_tensor_bytes(model_pt)
    # torch alone loads it, with other weights: exactly the silent failure
    original = torch.load(trained / "run" / "pretrain" / "model.pt", weights_only=True)
    damaged = torch.load(model_pt, weights_only=True)
    assert any(not torch.equal(original["state_dict"][k], damaged["state_dict"][k])
               for k in original["state_dict"])

    with pytest.raises(UserError, match="corrupted") as info:
        load_pretrained(model_pt)
    assert str(model_pt) in str(info.value) and member in str(info.value)
    assert load_pretrained(trained / "run" / "pretrain" / "model.pt") is not None  # intact: loads

    code, _, err = w2vrun("featurize", model_pt, trained / "train.tsv", "--out", tmp_path / "f")
    assert_clean_exit(code, err)
    assert str(model_pt) in err and "corrupted" in err


def test_trainer_checkpoint_with_flipped_bytes_is_refused_on_resume(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    last = run / "checkpoints" / "pretrain" / "last.pt"
    # last.pt is a hard link to update_4.pt in the copy too: damage one copy only
    data = last.read_bytes()
    last.unlink()
    last.write_bytes(data)
    flip_tensor_bytes(last)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(last)
    assert load_checkpoint(run / "checkpoints" / "pretrain" / "update_4.pt")["format"]

    (run / "pretrain" / "DONE").unlink()          # an unfinished stage resumes from last.pt
    code, _, err = w2vrun(trained / "tiny.yaml", "--out", run)
    assert_clean_exit(code, err)
    assert str(last) in err and "update_<N>.pt" in err
