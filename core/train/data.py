"""What the trainer needs from the data layer, and the endless batch stream built on it.

A training loader is an iterable of :class:`~w2v.interfaces.Batch` (a torch
``DataLoader`` over a batch sampler) made by a :data:`LoaderFactory` for one
epoch. The sampler is what makes resuming exact: it is told, batch by batch,
which batches training has *consumed* (a ``DataLoader`` with workers
prefetches ahead of that), and its ``state_dict()`` describes the position after
the last consumed batch, so a resumed run continues with the next one.

For a resumed run to repeat the uninterrupted one exactly, a batch's content
must be a function of (epoch, position): random crops and the like should draw
from a generator seeded by (seed, epoch, utterance index), not from a worker's
global random state. The sampler's state must not depend on the rank (every
rank loads rank 0's).

Example::

    def make_loader(epoch: int, sampler_state: dict | None):
        sampler = MyBatchSampler(lengths, max_tokens, seed=1, rank=rank, world_size=world)
        sampler.set_epoch(epoch)
        if sampler_state is not None:
            sampler.load_state_dict(sampler_state)   # skip the batches already consumed
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=2)
        return loader, sampler
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, runtime_checkable

import torch

from ..errors import DataError
from ..interfaces import Batch


@runtime_checkable
class ResumableBatchSampler(Protocol):
    """A batch sampler whose position survives a restart.

    ``state_dict()`` must describe the epoch and the number of batches marked
    consumed so far (not the number handed to a prefetching loader), and
    ``load_state_dict(state)`` on a sampler of the same epoch must make the next
    iteration start right after those batches.
    """

    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def mark_consumed(self, num_batches: int = 1) -> None:
        """Training used ``num_batches`` more batches of this epoch."""


#: ``factory(epoch, sampler_state | None) -> (iterable of Batch, sampler)``: the loader for one
#: epoch, positioned after the consumed batches when ``sampler_state`` is given. It may return
#: the same loader (persistent workers) every epoch after ``sampler.set_epoch(epoch)``. A batch
#: with no utterances (all skipped) is allowed: the trainer steps on it with a zero loss.
LoaderFactory = Callable[[int, "Mapping[str, Any] | None"], "tuple[Iterable[Batch], Any]"]

def reusing_loader(loader: Iterable[Batch], sampler: Any) -> LoaderFactory:
    """A :data:`LoaderFactory` over one loader (persistent workers) and its batch sampler:
    each epoch calls ``sampler.set_epoch(epoch)`` and, on resume, ``load_state_dict``.

    Example: ``Trainer(..., train_data=reusing_loader(*build_loader(cfg, "train", ...)))``.
    """

    def factory(epoch: int, sampler_state: Mapping[str, Any] | None):
        sampler.set_epoch(epoch)
        if sampler_state is not None:
            sampler.load_state_dict(sampler_state)
        return loader, sampler

    return factory


#: Validation data: a re-iterable of batches, or a callable returning a fresh iterable.
ValidData = Iterable[Batch] | Callable[[], Iterable[Batch]]


class BatchStream:
    """Batches across epoch boundaries, counting what training consumed.

    Args:
        factory: makes one epoch's loader and sampler.
        epoch: the epoch to start in (0-based).
        sampler_state: the sampler's saved state for ``epoch``, or None to start it afresh.
        consumed: batches of ``epoch`` already consumed (kept for reports and samplers
            without ``mark_consumed``).
        seed: loaders are opened with torch's global generator seeded from ``(seed, epoch)``
            (so a ``DataLoader``'s worker base seed depends on the epoch only) and the
            caller's random state is left as it was.
    """

    def __init__(self, factory: LoaderFactory, epoch: int = 0,
                 sampler_state: Mapping[str, Any] | None = None, consumed: int = 0,
                 seed: int = 0) -> None:
        self.factory = factory
        self.seed = seed
        self.epoch = epoch
        self.consumed = consumed
        self._pending_state = sampler_state
        self._iter: Iterator[Batch] | None = None
        self.sampler: Any = None

    def _open(self) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed + 1_000_003 * self.epoch) & ((1 << 63) - 1))
            loader, self.sampler = self.factory(self.epoch, self._pending_state)
            self._pending_state = None
            self._iter = iter(loader)

    def next(self) -> Batch:
        """The next batch; a finished epoch opens the next one."""
        empty_epochs = 0
        while True:
            if self._iter is None:
                self._open()
            try:
                batch = next(self._iter)
            except StopIteration:
                self._iter = None
                empty_epochs += int(self.consumed == 0)
                if empty_epochs > 1:
                    raise DataError("the training data yields no batches (two epochs in a row "
                                    "were empty).",
                                    hint="Check the training manifest, `min_sample_size` and "
                                         "`max_tokens`.") from None
                self.epoch += 1
                self.consumed = 0
                continue
            self.consumed += 1
            mark = getattr(self.sampler, "mark_consumed", None)
            if mark is not None:
                mark(1)
            return batch

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "consumed", "sampler"}``: where a resumed run continues."""
        sampler_state = None
        if self.sampler is not None and hasattr(self.sampler, "state_dict"):
            sampler_state = self.sampler.state_dict()
        elif self._pending_state is not None:
            sampler_state = dict(self._pending_state)
        return {"epoch": self.epoch, "consumed": self.consumed, "sampler": sampler_state}

    def close(self) -> None:
        """Drop the current iterator (shuts down loader workers)."""
        self._iter = None
