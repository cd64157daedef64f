"""Same `trainer.seed`, same run: model initialisation, masks, negatives and data order all
follow the seed, so two fresh CPU runs of a recipe are bitwise identical (metrics.jsonl and
checkpoint tensors), whatever the process did with its random generators before."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_run import w2vrun, write_corpus, write_recipe


def train_losses(run: Path) -> list[dict]:
    """Every train record of metrics.jsonl without its timing."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "time" not in k} for r in rows
            if r.get("split") == "train"]


def tensors(path: Path) -> dict[str, torch.Tensor]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("state_dict") or blob["model"]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seeding")
    return write_recipe(root, write_corpus(root), max_updates=4, save_interval=2)


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process-loading", "two-loader-workers"])
def test_two_fresh_runs_are_bitwise_identical(recipe, tmp_path, workers):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        code, _, err = w2vrun(recipe, "--out", run, f"data.num_workers={workers}")
        assert code == 0, err[-3000:]
    first, second = (train_losses(run) for run in runs)
    assert len(first) == 4 and first == second
    assert_same_tensors(tensors(runs[0] / "pretrain" / "model.pt"),
                        tensors(runs[1] / "pretrain" / "model.pt"))
    assert_same_tensors(tensors(runs[0] / "checkpoints" / "pretrain" / "last.pt"),
                        tensors(runs[1] / "checkpoints" / "pretrain" / "last.pt"))


def test_another_seed_gives_another_initialisation(recipe, tmp_path):
    for run, seed in ((tmp_path / "one", 1), (tmp_path / "two", 2)):
        code, _, err = w2vrun(recipe, "--out", run, f"trainer.seed={seed}", "trainer.max_updates=1")
        assert code == 0, err[-3000:]
    one = tensors(tmp_path / "one" / "pretrain" / "model.pt")
    two = tensors(tmp_path / "two" / "pretrain" / "model.pt")
    assert any(not torch.equal(one[k], two[k]) for k in one)


def test_initialisation_ignores_what_the_process_drew_before(recipe, tmp_path):
    from w2v.cli import main

    models = []
    for i, run in enumerate((tmp_path / "x", tmp_path / "y")):
        torch.manual_seed(1000 + i)                 # a different history before each run
        random.seed(i)
        np.random.seed(i)
        torch.rand(17 * (i + 1))
        assert main([str(recipe), "--out", str(run), "trainer.max_updates=1",
                     "trainer.num_threads=1"]) in (0, None)
        models.append(tensors(run / "pretrain" / "model.pt"))
    assert_same_tensors(*models)
