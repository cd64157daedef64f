"""Fixtures for the data-layer tests: tiny real audio files written with soundfile."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(1)


class Corpus:
    """Writes small audio files under ``root`` and manifests listing them."""

    def __init__(self, root):
        self.root = str(root)
        self.rng = np.random.default_rng(0)

    def audio(self, name: str, n: int = 1600, *, sr: int = 16000, channels: int = 1,
              data: np.ndarray | None = None, subtype: str | None = None) -> str:
        path = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if data is None:
            shape = (n,) if channels == 1 else (n, channels)
            data = (0.1 * self.rng.standard_normal(shape)).astype(np.float32)
        sf.write(path, data, sr, subtype=subtype)
        return path

    def manifest(self, name: str, rows: list[tuple[str, int]]) -> str:
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write(self.root + "\n")
            for rel, n in rows:
                f.write(f"{rel}\t{n}\n")
        return path

    def labels(self, name: str, lines: list[str]) -> str:
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        return path


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return Corpus(tmp_path)
