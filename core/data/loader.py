"""Batching a dataset (:func:`loader_over`) and finding a split's manifest or a corpus file
(:func:`resolve_manifest`, :func:`resolve_corpus`); :func:`w2v.data.sources.build_loader` opens
the source a ``data:`` section names and asks it for a loader."""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError, DataError, did_you_mean
from ..interfaces import Batch
from .collate import Collater, LoaderFailure
from .config import DataConfig
from .dataset import AudioDataset
from .sampler import BucketBatchSampler
from .skips import SkipRecord
from .workers import usable_workers

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def _single_thread_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one intra-op thread per worker (fairseq #3342)."""
    torch.set_num_threads(1)


class AudioLoader(DataLoader):
    """A DataLoader that raises bad inputs (``fail``) as a DataError in the main process and
    gathers skipped inputs (``skip``) in :attr:`skipped`.

    Yields :class:`~w2v.interfaces.Batch`; a batch whose every utterance was
    skipped has ``size == 0`` (the trainer must still step on it under DDP).
    """

    def __init__(self, dataset: AudioDataset, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        self._read_skips: list[SkipRecord] = []

    @property
    def skipped(self) -> list[SkipRecord]:
        """Inputs left out so far: at load time plus while reading (may repeat across epochs)."""
        return list(self.dataset.skipped) + self._read_skips

    def __iter__(self) -> Iterator[Batch]:
        batches = super().__iter__()
        budget = getattr(self.dataset, "skip_budget", None)
        count = usable = 0
        for batch in batches:
            if isinstance(batch, LoaderFailure):
                self._stop_workers(batches)
                raise batch.bad.to_error()
            skipped = batch.extra.get("skipped", ())
            self._read_skips.extend(skipped)
            count += 1
            usable += batch.source.shape[0]
            if budget is not None:
                try:
                    budget.read(skipped)
                except DataError:
                    self._stop_workers(batches)
                    raise
            yield batch
        if budget is not None and count and not usable:
            budget.nothing_usable(count)

    def _stop_workers(self, batches: Any) -> None:
        """Shut worker processes down now rather than whenever the iterator is collected
        (collection can happen while an import holds the lock the workers' queue thread needs)."""
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if self.persistent_workers:
            self._iterator = None


_CORPUS_REF = re.compile(r"^([A-Za-z][A-Za-z0-9_\-]*):([A-Za-z0-9_\-]+)$")


def resolve_corpus(path: str, key: str) -> str:
    """``NAME:SPLIT`` (``demo:train``) -> the manifest a registered corpus provides.

    The corpus is built on first use; the reference is explicit in the recipe,
    so no data path ever falls back to a corpus silently.
    """
    m = _CORPUS_REF.match(path)
    if m is None or os.path.exists(path):
        return path
    from ..plugin_manager import registry

    corpora = registry().corpora
    name, split = m.groups()
    if name not in corpora:
        raise DataError(f"`{path}` names the corpus `{name}`, which no plugin provides.",
                        key=key, hint=did_you_mean(name, list(corpora), "corpora"))
    return str(corpora[name].resolve(split))


def resolve_manifest(cfg: DataConfig, split: str) -> str:
    """The manifest file of ``split``; DataError with how to make one when it is not set."""
    if split not in SPLITS:
        raise ConfigError(f"unknown data split `{split}`.", hint=did_you_mean(split, SPLITS))
    path = cfg.manifest(split)
    if path is None:
        raise DataError(f"no manifest is set for the `{split}` split.",
                        key=f"data.{split}",
                        hint="Make manifests with `w2vrun manifest AUDIO_DIR --dest DIR` and set "
                             f"`data.{split}: DIR/{split}.tsv`, or run the demo recipe.")
    path = resolve_corpus(path, f"data.{split}")
    if os.path.isdir(path):
        path = os.path.join(path, f"{split}.tsv")
    if not os.path.isfile(path):
        raise DataError(f"manifest `{path}` does not exist.", key=f"data.{split}",
                        hint="Make it with `w2vrun manifest AUDIO_DIR --dest DIR`, or run the "
                             "demo recipe.")
    return path


def loader_over(dataset: AudioDataset, cfg: DataConfig, *, rank: int = 0, world_size: int = 1,
                epoch: int = 0, train: bool = True) -> tuple[AudioLoader, BucketBatchSampler]:
    """A DataLoader (batches as ``cfg`` says) over ``dataset`` and its batch sampler."""
    sampler = BucketBatchSampler(dataset.sizes, max_tokens=cfg.max_tokens,
                                 max_sample_size=cfg.max_sample_size,
                                 num_buckets=cfg.num_batch_buckets,
                                 shuffle=train and cfg.shuffle, seed=cfg.seed, rank=rank,
                                 world_size=world_size, epoch=epoch)
    collate = Collater(pad=cfg.pad, max_sample_size=cfg.max_sample_size, pad_id=dataset.pad_id,
                       seed=cfg.seed, train=train,
                       bucket_edges=sampler.edges if cfg.num_batch_buckets else None,
                       bad_input=cfg.bad_input)
    if getattr(dataset, "skip_budget", None) is not None:
        dataset.skip_budget.world_size = max(world_size, 1)
    workers = usable_workers(cfg.num_workers)
    loader = AudioLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                         worker_init_fn=_single_thread_worker if workers else None,
                         persistent_workers=train and workers > 0,
                         # the pin-memory thread pins a custom type only through its own
                         # ``pin_memory()`` method
                         pin_memory=torch.cuda.is_available() and hasattr(Batch, "pin_memory"),
                         prefetch_factor=2 if workers else None)
    return loader, sampler
