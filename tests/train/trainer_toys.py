"""Tiny in-memory data, model and objectives for the trainer tests.

The data follows the trainer's loader protocol (:mod:`w2v.train.data`): a
``DataLoader`` over a resumable, rank-sharded batch sampler. The objective
masks frames at random and the model uses dropout, so resuming exactly
depends on the trainer's per-update reseeding.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from w2v.interfaces import Batch, ModelOutput, Objective, ObjectiveOutput

WAVE_LEN = 64
FRAMES = (WAVE_LEN - 4) // 2 + 1  # conv kernel 4, stride 2


class ToyDataset(Dataset):
    """``n`` random "waveforms" of WAVE_LEN samples, with a fixed per-utterance frame mask.

    ``nan_ids``: utterances whose waveform is NaN (broken inputs).
    """

    def __init__(self, n: int = 64, seed: int = 0, nan_ids: tuple[int, ...] = ()) -> None:
        g = torch.Generator().manual_seed(seed)
        self.waves = torch.randn(n, WAVE_LEN, generator=g)
        for i in nan_ids:
            self.waves[i] = float("nan")
        self.masks = torch.rand(n, FRAMES, generator=g) < 0.5
        self.masks[:, 0] = True  # at least one masked frame each

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        return i, self.waves[i], self.masks[i]


def collate(items) -> Batch:
    ids, waves, masks = zip(*items)
    return Batch(source=torch.stack(waves), ids=torch.tensor(ids),
                 extra={"mask": torch.stack(masks)})


class ToyBatchSampler:
    """Fixed-size batches, shuffled with ``seed + epoch``, sharded ``batches[rank::world]``.

    Implements :class:`w2v.train.data.ResumableBatchSampler`.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.consumed = 0
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.consumed = self._start = 0

    def _batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        batches = [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        return batches[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self._start:]

    def __len__(self) -> int:
        return len(self._batches()) - self._start

    def mark_consumed(self, num_batches: int = 1) -> None:
        self.consumed += num_batches

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": self._start + self.consumed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self._start = int(state["consumed"])
        self.consumed = 0


def loader_factory(dataset: ToyDataset, batch_size: int = 4, seed: int = 0, rank: int = 0,
                   world_size: int = 1, num_workers: int = 0, log: list | None = None):
    """``factory(epoch, sampler_state) -> (DataLoader, sampler)``; ``log`` records the calls."""

    def factory(epoch: int, state):
        if log is not None:
            log.append((epoch, None if state is None else dict(state)))
        sampler = ToyBatchSampler(len(dataset), batch_size, seed, rank, world_size)
        sampler.set_epoch(epoch)
        if state is not None:
            sampler.load_state_dict(state)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate,
                            num_workers=num_workers)
        return loader, sampler

    return factory


def valid_batches(n: int = 16, batch_size: int = 8, seed: int = 99) -> list[Batch]:
    ds = ToyDataset(n, seed=seed)
    return [collate([ds[i] for i in range(s, min(s + batch_size, n))])
            for s in range(0, n, batch_size)]


class Counter(nn.Module):
    """Remembers the update count the trainer announced (like a Gumbel temperature would)."""

    def __init__(self) -> None:
        super().__init__()
        self.num_updates = -1
        self.max_updates = -1

    def set_num_updates(self, n: int) -> None:
        self.num_updates = n

    def set_max_updates(self, n: int) -> None:
        self.max_updates = n

    def forward(self, x):
        return x


class ToyEncoder(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, dim, 4, stride=2)
        self.frozen = False  # the component's own flag: forward runs under no_grad

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        with torch.no_grad() if self.frozen else torch.enable_grad():
            return F.gelu(self.conv(wave[:, None])).transpose(1, 2)  # [B, T, C]


class ToyAggregator(nn.Module):
    """A 3-frame convolution (context), dropout, then a linear output layer."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, 2 * dim, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.out(self.dropout(h))


class ToyModel(nn.Module):
    """encoder (conv) -> aggregator (conv, dropout, linear); ``counter`` sees update counts."""

    def __init__(self, dim: int = 8, dropout: float = 0.1, layerdrop: float = 0.0) -> None:
        super().__init__()
        self.encoder = ToyEncoder(dim)
        self.mask_emb = nn.Parameter(torch.zeros(dim))
        self.aggregator = ToyAggregator(dim, dropout)
        self.counter = Counter()
        self.layerdrop = layerdrop

    def forward(self, batch: Batch, mask: torch.Tensor | bool = False, **request: Any
                ) -> ModelOutput:
        z = self.encoder(batch.source)
        mask = mask if isinstance(mask, torch.Tensor) else None
        x = z if mask is None else torch.where(mask[..., None], self.mask_emb.to(z.dtype), z)
        return ModelOutput(local=z, mask=mask, context=self.aggregator(x))


class ToyObjective(Objective):
    """Predict the masked frames' features: loss summed over masked frames (the sample size).

    Masks come from ``batch.extra["mask"]`` when ``injected`` else are drawn with the global
    torch RNG (so they depend on the trainer's reseeding).
    """

    def __init__(self, dim: int = 8, injected: bool = False, mask_prob: float = 0.5) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.injected = injected
        self.mask_prob = mask_prob
        self.counter = Counter()

    def request(self, batch: Batch, model: nn.Module, step: int) -> dict[str, Any]:
        b = batch.source.shape[0]
        if self.injected:
            mask = batch.extra["mask"]
        else:
            mask = torch.rand(b, FRAMES, device=batch.source.device) < self.mask_prob
            mask[:, 0] = True
        return {"mask": mask}

    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        b = batch.source.shape[0]
        z, c, mask = output.local, output.context, output.mask
        pred = self.proj(c)
        err = ((pred.float() - z.detach().float()) ** 2).sum(-1)  # [B, T]
        loss = (err * mask).sum()
        n = mask.sum()
        return ObjectiveOutput(loss=loss, sample_size=n,
                               stats={"masked_frac": mask.float().mean(), "n_utts": b})


class ToyGanObjective(Objective):
    """Composite training: even updates train ``generator`` (the model), odd ones
    ``discriminator`` (this objective's ``disc``)."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.disc = nn.Linear(dim, 1)
        self.groups_seen: list[str] = []
        self.step = 0

    def parameter_groups(self, model: nn.Module):
        return {"generator": list(model.parameters()),
                "discriminator": list(self.disc.parameters())}

    def group_for_step(self, step: int) -> str:
        return "generator" if step % 2 == 0 else "discriminator"

    def set_num_updates(self, num_updates: int) -> None:
        self.step = num_updates                  # the trainer calls this before each update

    def forward(self, batch: Batch, output: ModelOutput) -> ObjectiveOutput:
        group = self.group_for_step(self.step)
        self.groups_seen.append(group)
        z, c = output.local, output.context
        score = self.disc(c).squeeze(-1)  # [B, T]
        if group == "generator":
            loss = F.softplus(-score).sum()
        else:
            loss = F.softplus(self.disc(c.detach()).squeeze(-1)).sum() + \
                F.softplus(-self.disc(z.detach()).squeeze(-1)).sum()
        return ObjectiveOutput(loss=loss, sample_size=score.numel(), stats={}, group=group)
