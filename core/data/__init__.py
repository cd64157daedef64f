"""Data: fairseq manifests and labels, checked audio reading, batching, loaders.

- :mod:`~w2v.data.config`: the recipe's ``data:`` section (:class:`DataConfig`).
- :mod:`~w2v.data.manifest`: read/write ``train.tsv`` manifests; make them from a folder.
- :mod:`~w2v.data.audio`: one file to a checked mono waveform.
- :mod:`~w2v.data.labels`: ``.ltr``/``.wrd``/``.phn`` labels and building them.
- :mod:`~w2v.data.dataset`: :class:`AudioDataset` and the bad-input policy.
- :mod:`~w2v.data.sampler`: :class:`BucketBatchSampler` (resumable, sharded).
- :mod:`~w2v.data.collate`, :mod:`~w2v.data.loader`: batches; :mod:`~w2v.data.sources`: the
  data sources and :func:`build_loader`.
"""

from .config import DataConfig
from .dataset import AudioDataset
from .sources import build_dataset, build_loader
from .manifest import Manifest, read_manifest, write_manifest, write_manifests
from .sampler import BucketBatchSampler
from .skips import BadInput, SkipRecord, write_skip_report

__all__ = ["AudioDataset", "BadInput", "BucketBatchSampler", "DataConfig", "Manifest",
           "SkipRecord", "build_dataset", "build_loader", "read_manifest", "write_manifest",
           "write_manifests", "write_skip_report"]
