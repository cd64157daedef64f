"""The ``hf_dataset`` data source: Hugging Face ``datasets`` audio datasets saved to disk.

A split is a directory written by ``Dataset.save_to_disk`` (or a
``DatasetDict``'s, whose split is then chosen by name). It is opened with
``datasets.load_from_disk`` and its audio column cast to ``Audio(decode=False)``,
so each row gives the encoded file (bytes, or a path) and w2v decodes it with
soundfile and applies the same checks as to any audio file (recent ``datasets``
would otherwise decode through torchcodec). ``datasets`` is an optional
dependency (``pip install datasets``). Messages name rows as ``DIR:ROW`` (1-based).
"""

from __future__ import annotations

import io
import os

import attrs
import torch

from w2v.config import field
from w2v.data.config import DataConfig
from w2v.data.dataset import AudioDataset
from w2v.data.sources import AudioSource, SourceTable, TableRows
from w2v.errors import DataError, did_you_mean


@attrs.define(kw_only=True)
class HFDatasetConfig(DataConfig):
    name: str = field("hf_dataset", "the data source (`w2vrun list data_source`)")
    train: str | None = field(None, "training dataset directory (`save_to_disk`); for a saved "
                                    "DatasetDict, its `train` split")
    valid: str | None = field(None, "validation dataset directory (a DatasetDict: its `valid` "
                                    "or `validation` split)")
    test: str | None = field(None, "test dataset directory (a DatasetDict: its `test` split)")
    audio_column: str = field("audio", "the column of Audio features")
    text_column: str | None = field("text", "the transcript column (null: none); used for "
                                            "labels and manifest conversion")
    id_column: str | None = field(None, "a column of utterance ids (null: the row number)")
    dictionary: str | None = field(None, "label dictionary (fairseq `symbol count` lines); null: "
                                         "the symbols of the train split's labels")


def load_split(path: str, split: str, key: str):
    """The ``datasets.Dataset`` saved at ``path`` (a DatasetDict's ``split``)."""
    try:
        import datasets
    except ImportError:
        raise DataError("the `hf_dataset` data source needs the `datasets` package.", key=key,
                        hint="Install it: `pip install datasets`.") from None
    if not os.path.isdir(path):
        raise DataError(f"dataset directory `{path}` does not exist.", key=key,
                        hint="Save a dataset there with `dataset.save_to_disk(path)`.")
    try:
        ds = datasets.load_from_disk(path)
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"`{path}` is not a dataset saved with `save_to_disk` ({exc}).",
                        key=key) from None
    if isinstance(ds, datasets.DatasetDict):
        names = [split] + (["validation"] if split == "valid" else [])
        found = next((n for n in names if n in ds), None)
        if found is None:
            raise DataError(f"`{path}` is a DatasetDict without a `{split}` split.", key=key,
                            hint=did_you_mean(split, list(ds), "splits"))
        ds = ds[found]
    return ds


class HFTable(SourceTable):
    """A dataset split's rows; ``dataset`` is the ``datasets.Dataset`` (audio not decoded)."""

    def __init__(self, path: str, rows: TableRows, dataset, column: str):
        super().__init__(path, rows)
        self.dataset = dataset
        self.column = column
        self.positions = rows.positions


class HFAudioDataset(AudioDataset):
    """Decodes each row's encoded audio (bytes or file) with soundfile, with the usual checks."""

    def read(self, row: int) -> tuple[torch.Tensor, int]:
        table: HFTable = self.manifest
        audio = table.dataset[int(table.positions[row])][table.column]
        return decode_audio(audio, table.audio_path(row), sample_rate=self.sample_rate,
                            min_samples=self.min_samples,
                            expected_samples=int(table.sizes[row]))


def _open(audio: dict):
    """A soundfile-readable object for an ``Audio(decode=False)`` value."""
    if audio.get("bytes"):
        return io.BytesIO(audio["bytes"])
    return audio.get("path")


def decode_audio(audio: dict, name: str, *, sample_rate: int, min_samples: int = 0,
                 expected_samples: int | None = None):
    import soundfile as sf

    from w2v.data.audio import checked_wave, read_audio
    from w2v.data.skips import BadInput

    if not audio.get("bytes"):
        path = audio.get("path")
        if not path:
            raise BadInput("missing", name, "the row has neither audio bytes nor a path")
        return read_audio(path, sample_rate=sample_rate, min_samples=min_samples,
                          expected_samples=expected_samples)
    try:
        data, rate = sf.read(io.BytesIO(audio["bytes"]), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise BadInput("unreadable", name, str(exc)) from None
    return checked_wave(data, int(rate), name, sample_rate=sample_rate, min_samples=min_samples,
                        expected_samples=expected_samples)


class HFDatasetSource(AudioSource):
    """Hugging Face ``datasets`` saved to disk, audio decoded with soundfile."""

    Config = HFDatasetConfig

    @property
    def dataset_class(self):
        return HFAudioDataset

    def table(self, split: str) -> HFTable:
        import soundfile as sf

        from datasets import Audio

        from w2v.data.skips import BadInput, handle

        cfg = self.config
        path = self.location(split)
        key = f"data.{split}"
        ds = load_split(path, split, key)
        for column in (cfg.audio_column, cfg.text_column, cfg.id_column):
            if column is not None and column not in ds.column_names:
                raise DataError(f"dataset `{path}` has no column `{column}`.", key=key,
                                hint=did_you_mean(column, ds.column_names, "columns"))
        ds = ds.cast_column(cfg.audio_column, Audio(decode=False))
        rows = TableRows(cfg.bad_input)
        rows.positions = []
        audio_col = ds[cfg.audio_column]
        texts = ds[cfg.text_column] if cfg.text_column else None
        ids = ds[cfg.id_column] if cfg.id_column else None
        for i, audio in enumerate(audio_col):
            name = f"{path}[{i}]" + (f" ({audio['path']})" if audio.get("path") else "")
            where = f"{path}:{i + 1}"
            source = _open(audio)
            try:
                if source is None:
                    raise BadInput("missing", name, "the row has neither audio bytes nor a path")
                if isinstance(source, str) and not os.path.isfile(source):
                    raise BadInput("missing", source)
                frames = sf.info(source).frames
            except BadInput as bad:
                handle(bad.at(where), cfg.bad_input, rows.skipped)
                continue
            except (RuntimeError, sf.LibsndfileError) as exc:
                handle(BadInput("unreadable", name, str(exc), where=where), cfg.bad_input,
                       rows.skipped)
                continue
            rows.positions.append(i)
            rows.add(path=name, size=frames, line=i + 1,
                     uid=str(ids[i]) if ids is not None else str(i),
                     text=texts[i] if texts is not None else None)
        rows.files = [f"{path}[{p}]" for p in rows.positions]  # not paths: rows of the dataset
        return HFTable(path, rows, ds, cfg.audio_column)
