"""The recipe's ``data:`` section: :class:`SourceConfig` (every data source) and
:class:`DataConfig` (waveform sources: fairseq manifests, Kaldi, Lhotse, Hugging Face)."""

from __future__ import annotations

from typing import Literal

import attrs

from ..config import ComponentSpec, check, choice, components, field, real, size

LabelKind = Literal["ltr", "wrd", "phn"]
BadInputPolicy = Literal["fail", "skip"]

#: Largest audio length (samples) a size field accepts: 2**31, about 37 hours at 16 kHz.
_MAX_SAMPLES = 1 << 31


@attrs.define(kw_only=True)
class SourceConfig:
    """What every data source's section has: its name, a location per split, labels,
    batching and the bad-input policy. Each source subclasses it (``train`` means a
    manifest for ``fairseq``, a data directory for ``kaldi``, ...)."""

    name: str = field("fairseq", "the data source (`w2vrun list data_source`); fairseq "
                                 "manifests when not set")
    train: str | None = field(
        None, "training manifest (.tsv); a directory means `<dir>/train.tsv`. "
              "Make one with `w2vrun manifest AUDIO_DIR --dest DIR`.")
    valid: str | None = field(
        None, "validation manifest (.tsv); a directory means `<dir>/valid.tsv`")
    test: str | None = field(
        None, "test manifest (.tsv); a directory means `<dir>/test.tsv`")
    labels: LabelKind | None = choice(
        None, "label file extension beside each manifest (`train.ltr`): letters `ltr`, "
              "words `wrd`, phones `phn`; null for unlabelled audio")
    dictionary: str | None = field(
        None, "label dictionary (fairseq `symbol count` lines); "
              "null means `dict.<labels>.txt` beside the manifest")
    max_tokens: int = size(1_400_000, 1, _MAX_SAMPLES,
                           "audio samples per device batch (max length x batch size)")
    num_workers: int = size(0, 0, 64, "DataLoader worker processes per device")
    bad_input: BadInputPolicy = choice(
        "fail", "what to do with a missing, unreadable, empty, silent, non-finite or too short "
                "file, or a label with symbols outside the dictionary: `fail` stops naming the "
                "file and manifest line, `skip` leaves it out and lists it in "
                "`<run dir>/<stage>/skipped.tsv`")
    max_skipped: float = real(
        0.1, 0.0, 1.0, "with `bad_input: skip`: stop (exit 2) when more than this fraction of a "
                       "split's utterances are bad inputs (the min/max_sample_size filters do "
                       "not count), or when none is usable; 1.0: no limit")
    shuffle: bool = field(True, "shuffle the batch order each epoch (training only)")
    seed: int = size(1, 0, (1 << 31) - 1, "seed of batch shuffling and random crops "
                                          "(each epoch uses seed + epoch)")
    sources: dict[str, ComponentSpec] = components(
        "data_source", "more sources the stage reads side by side, by name (wav2vec-U: "
                       "`{text: {name: units, ...}}` beside the audio features)")

    def __attrs_post_init__(self) -> None:
        check(self.dictionary is None or self.labels is not None, "dictionary",
              "is set but `labels` is null, so there is nothing to encode.",
              hint="Set `labels: ltr` (or `wrd`, `phn`), or remove `dictionary`.")

    def manifest(self, split: str) -> str | None:
        """The location configured for ``split`` (``train``, ``valid``, ``test``)."""
        return getattr(self, split)

    def inputs(self, splits: tuple[str, ...] = ("train",), optional: tuple[str, ...] = ()
               ) -> dict[str, str | None]:
        """The paths outside the run directory that reading ``splits`` (and ``optional``
        ones, when set) needs, by key (``{"data.train": "demo:unlabeled"}``), for the
        checks before a run. Sources whose splits are not paths override it."""
        found = {f"data.{s}": self.manifest(s) for s in splits}
        found.update({f"data.{s}": self.manifest(s) for s in optional
                      if self.manifest(s) is not None})
        return found


@attrs.define(kw_only=True)
class DataConfig(SourceConfig):
    """Waveforms: manifests, audio format, batching and the bad-input policy.

    A manifest is a fairseq ``.tsv`` (first line the audio root, then
    ``relative/path<TAB>num_samples``); labels and the dictionary sit beside it
    (``train.tsv`` -> ``train.ltr``, ``dict.ltr.txt``).
    """

    sample_rate: int = size(16000, 1000, 192000, "audio sample rate in Hz; files at another "
                                                 "rate are resampled (and logged)")
    max_sample_size: int = size(250_000, 1, _MAX_SAMPLES,
                                "longest utterance in samples: longer ones are randomly cropped "
                                "(unlabelled) or left out (labelled)")
    min_sample_size: int = size(0, 0, _MAX_SAMPLES,
                                "utterances shorter than this many samples are left out")
    pad: bool = field(False, "False: crop every batch to its shortest utterance (pretraining, "
                             "no padding); True: zero-pad to the longest and carry lengths "
                             "(fine-tuning, needed with labels)")
    num_batch_buckets: int = size(0, 0, 1024, "group lengths into this many buckets (by "
                                               "percentile) and pad to the bucket edge; 0: off")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        check(self.min_sample_size <= self.max_sample_size, "min_sample_size",
              f"must not exceed max_sample_size ({self.max_sample_size}), "
              f"found {self.min_sample_size}.")
        check(self.max_tokens >= self.max_sample_size, "max_tokens",
              f"must be at least max_sample_size ({self.max_sample_size}) so that one utterance "
              f"fits a batch, found {self.max_tokens}.",
              hint="Raise `max_tokens` or lower `max_sample_size`.")
