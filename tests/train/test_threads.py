"""CPU threads: the trainer follows OMP_NUM_THREADS when `trainer.num_threads` is 0, and
`w2vrun ablate --parallel N` gives each run its share of the cores (runs that each take
every core slow one another down many times over)."""

from __future__ import annotations

import os

import pytest
import torch

from w2v.plugins.ablation.runs import child_environment
from w2v.train.runtime import configure_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_zero_follows_omp_num_threads(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_threads(0) == 1 and torch.get_num_threads() == 1


def test_zero_without_omp_num_threads_takes_the_cores_per_local_rank(monkeypatch,
                                                                    restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count() or 1
    assert configure_threads(0) == cores
    assert configure_threads(0, local_world_size=cores * 2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "many")            # not a count: ignored
    assert configure_threads(0) == cores


def test_an_explicit_count_wins_over_the_environment(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert configure_threads(2) == 2 and torch.get_num_threads() == 2


def test_parallel_runs_get_a_share_of_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = os.cpu_count() or 1
    assert "OMP_NUM_THREADS" not in child_environment(1)
    assert child_environment(2)["OMP_NUM_THREADS"] == str(max(1, cores // 2))
    assert child_environment(cores * 4)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")               # the user's choice stays
    assert child_environment(2)["OMP_NUM_THREADS"] == "3"
