"""Helpers for the CTC tests: a letter dictionary fixture, a tiny SpeechModel and a synthetic
"spoken letters" task (each letter is a fixed 16-sample pattern of its own).

The encoder and aggregator are minimal test-local implementations of the core
interfaces, wired by the real :class:`w2v.model.SpeechModel`.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from w2v.data.dictionary import Dictionary
from w2v.interfaces import (Aggregator, AggregatorOutput, Batch, Encoder, EncoderOutput,
                            Signal, waveform_signal)
from w2v.model import SpeechModel

torch.set_num_threads(1)

FRAME = 16                      # samples per frame (the encoder's stride)
LETTERS = ["|", "E", "T", "A", "O", "N"]


class FrameEncoder(Encoder):
    """Conv1d(kernel = stride = 16) + ReLU: one feature vector per 16 samples."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv1d(1, dim, FRAME, stride=FRAME)

    def produces(self) -> Signal:
        return waveform_signal().then(kind="frames", dim=self.dim, stride=FRAME,
                                      receptive_field=FRAME)

    def forward(self, source, lengths=None):
        x = torch.relu(self.conv(source[:, None, :])).transpose(1, 2)
        out_lengths = None if lengths is None else self.output_lengths(lengths)
        return EncoderOutput(features=x, lengths=out_lengths)


class ConvContext(Aggregator):
    """Two non-causal convolutions (kernel 3) with a residual: ``[B, T, D] -> [B, T, D]``."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.input_dim = dim
        self.conv1 = nn.Conv1d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, padding=1)

    def produces(self) -> Signal:
        return waveform_signal().then(kind="frames", dim=self.input_dim, stride=FRAME,
                                      receptive_field=5 * FRAME, causal=False)

    def forward(self, x, lengths=None, layers=None):
        h = torch.relu(self.conv1(x.transpose(1, 2)))
        y = x + self.conv2(h).transpose(1, 2)
        return AggregatorOutput(output=y, layers=[y], lengths=lengths)


def tiny_model(vocab_size: int, masker: nn.Module | None = None) -> SpeechModel:
    from w2v.plugins.ctc import attach_ctc_head

    model = SpeechModel(FrameEncoder(16), ConvContext(32), masker=masker)
    return attach_ctc_head(model, vocab_size)


@pytest.fixture
def letters() -> Dictionary:
    return Dictionary.from_symbols(LETTERS)


def tone(index: int) -> torch.Tensor:
    """The fixed 16-sample frame pattern of letter id ``index``."""
    return 0.5 * torch.randn(FRAME, generator=torch.Generator().manual_seed(100 + index))


def make_batch(dictionary: Dictionary, texts: list[str], generator: torch.Generator,
               noise: float = 0.05) -> Batch:
    """Waveforms that say ``texts`` (letter labels ``T E N | ...``): each symbol lasts 1-2
    frames, followed by 0-1 silent frames (always one before a repeated symbol)."""
    waves, labels = [], []
    for text in texts:
        symbols = text.split()
        frames = []
        for k, s in enumerate(symbols):
            frames += [tone(dictionary.index(s))] * int(torch.randint(1, 3, (1,),
                                                                      generator=generator))
            repeat = k + 1 < len(symbols) and symbols[k + 1] == s
            silent = 1 if repeat else int(torch.randint(0, 2, (1,), generator=generator))
            frames += [torch.zeros(FRAME)] * silent
        w = torch.cat(frames)
        waves.append(w + noise * torch.randn(w.shape, generator=generator))
        labels.append(torch.tensor(dictionary.encode(symbols)))
    lengths = torch.tensor([len(w) for w in waves])
    source = torch.zeros(len(waves), int(lengths.max()))
    for b, w in enumerate(waves):
        source[b, :len(w)] = w
    target_lengths = torch.tensor([len(t) for t in labels])
    targets = torch.full((len(labels), int(target_lengths.max())), dictionary.pad)
    for b, t in enumerate(labels):
        targets[b, :len(t)] = t
    return Batch(source=source, lengths=lengths, targets=targets, target_lengths=target_lengths)


def random_texts(n: int, generator: torch.Generator) -> list[str]:
    """Letter labels of 1-2 random words of 1-3 letters each."""
    body = LETTERS[1:]
    texts = []
    for _ in range(n):
        words = []
        for _ in range(int(torch.randint(1, 3, (1,), generator=generator))):
            k = int(torch.randint(1, 4, (1,), generator=generator))
            idx = torch.randint(0, len(body), (k,), generator=generator).tolist()
            words.append(" ".join(body[i] for i in idx) + " |")
        texts.append(" ".join(words))
    return texts
