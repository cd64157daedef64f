"""Data sources (the ``data_source`` kind): choosing one from ``data:``, and the waveform base.

A recipe picks a source by name (``data: {name: kaldi, train: data/train}``);
without ``name`` it is ``fairseq`` (manifests). Stages never read files
themselves, they ask the source::

    source = open_source(sections.data)           # the stage's main source
    text = open_source(sections.data, "text")     # a second source read side by side,
                                                  # data.sources.text: {name: units, ...}
    loader, sampler = source.loader("train", epoch=0, train=True, min_samples=400)
    source.signal()       # waveform / features / tokens: sizes the model's input
    source.dictionary()   # the labels' (or a token source's) dictionary, or None

A wav2vec-U GAN stage reads audio features (``name: features``) and
phonemised text (``name: units`` over a phone dictionary) this way: two
loaders, one per source, each with its own sampler and bad-input report.

Waveform sources subclass :class:`AudioSource` and only say how a split
becomes a :class:`~w2v.data.manifest.Manifest` (rows of files, optionally
segments of them) and, when they carry transcripts, the transcript of each
row; reading, checking, the bad-input policy, batching and labels are shared.
"""

from __future__ import annotations

import collections
import os
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import ConfigError, DataError, did_you_mean
from ..interfaces import DataSource, Signal, waveform_signal
from .config import DataConfig, SourceConfig
from .manifest import Manifest
from .skip_budget import SkipBudget

if TYPE_CHECKING:
    from .dataset import AudioDataset
    from .loader import AudioLoader
    from .sampler import BucketBatchSampler

SPLITS = ("train", "valid", "test")
DEFAULT_SOURCE = "fairseq"


def structure_data(value: Any, srcmap=None, path: tuple[str, ...] = ("data",)) -> SourceConfig:
    """Structure a ``data:`` section into the config class of the source it names."""
    from ..config.structure import structure
    from ..plugin_manager import registry

    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"`{'.'.join(path)}` must be a mapping (a source `name:` and its keys), "
                          f"found {type(value).__name__} `{value}`.",
                          where=srcmap.where(path) if srcmap else None, key=".".join(path))
    value = dict(value or {})
    name = value.get("name", DEFAULT_SOURCE)
    if not isinstance(name, str):
        raise ConfigError(f"expected a data source name, found `{name}`.",
                          where=srcmap.where(path + ("name",)) if srcmap else None,
                          key=".".join(path + ("name",)))
    reg = registry().get("data_source", name,
                         where=srcmap.where(path + ("name",)) if srcmap else None,
                         key=".".join(path + ("name",)))
    value["name"] = name
    return structure(value, reg.config_cls, srcmap=srcmap, path=path)


def open_source(cfg: SourceConfig, side: str | None = None, *, context: Any = None
                ) -> DataSource:
    """The data source a ``data:`` section names; ``side``: one of its ``sources``.

    With a stage ``context``, a ``path`` that names a stage of the recipe
    (``path: featurize``) becomes that stage's output directory.
    """
    import attrs

    from ..plugin_manager import registry

    key = "data"
    if side is not None:
        spec = cfg.sources.get(side)
        if spec is None:
            raise ConfigError(f"the stage reads a second data source `{side}`, but "
                              f"`data.sources` has no `{side}`.", key=f"data.sources.{side}",
                              hint=did_you_mean(side, list(cfg.sources), "sources") +
                              f" Add `data: {{sources: {{{side}: {{name: ...}}}}}}`.")
        cfg, key = spec.config, f"data.sources.{side}"
        if not hasattr(cfg, "name") or cfg.name != spec.name:
            cfg = attrs.evolve(cfg, name=spec.name)
    path = getattr(cfg, "path", None)
    if context is not None and isinstance(path, str):
        if path in context.plans:
            cfg = attrs.evolve(cfg, path=str(context.output_of(path)))
        elif not os.path.exists(path):
            raise ConfigError(f"`{path}` is neither a stage of this recipe nor an existing "
                              "path.", key=f"{key}.path",
                              hint=did_you_mean(path, list(context.plans), "stage ids"))
    reg = registry().get("data_source", cfg.name, key=f"{key}.name")
    return reg.cls.from_config(cfg)


def sized_for_source(model_cfg, signal: Signal):
    """``model:`` with its encoder sized by what the source provides.

    A waveform source changes nothing. For feature frames or tokens the encoder's
    class must offer ``config_for_input(config, signal) -> config`` (the
    ``precomputed`` encoder takes the features' width and stride, ``unit_embedding``
    the vocabulary); any other encoder reads waveforms and is refused.
    """
    import attrs

    from ..plugin_manager import registry

    if signal.kind == "waveform" or model_cfg.encoder is None:
        return model_cfg
    enc = model_cfg.encoder
    fit = getattr(registry().get("encoder", enc.name).cls, "config_for_input", None)
    if fit is None:
        readers = [r.name for r in registry().of_kind("encoder")
                   if getattr(r.cls, "config_for_input", None) is not None]
        raise ConfigError(f"the data source gives {signal.kind} ({signal.describe()}), but "
                          f"encoder `{enc.name}` reads waveforms.", key="model.encoder",
                          hint=f"Use an encoder that reads {signal.kind}: "
                               f"{', '.join(f'`{n}`' for n in readers) or 'none registered'}.")
    return attrs.evolve(model_cfg, encoder=attrs.evolve(enc, config=fit(enc.config, signal)))


# --------------------------------------------------------------------------- waveforms
class AudioSource(DataSource):
    """A waveform source: rows of audio files (or segments), optionally with transcripts.

    Subclasses implement :meth:`table` and, when they carry transcripts,
    :meth:`transcripts`. ``Batch.source`` is ``[B, S]`` float at ``sample_rate``.
    """

    Config = DataConfig
    no_smoke_reason = "reads audio from disk; tests/data/test_data_sources.py exercises each " \
                      "waveform source on a tiny fixture"

    @property
    def dataset_class(self):
        """The dataset reading the rows (:class:`~w2v.data.dataset.AudioDataset`)."""
        from .dataset import AudioDataset

        return AudioDataset

    # ---------------------------------------------------------------- what subclasses say
    def table(self, split: str) -> Manifest:
        """The rows of ``split`` (DataError when it is not set or cannot be read)."""
        raise NotImplementedError

    def transcripts(self, split: str, table: Manifest) -> list[str] | None:
        """The transcript (words) of each row of ``table``, or None when the source has none
        (a :class:`SourceTable`'s ``texts``; a row without one is a DataError)."""
        texts = getattr(table, "texts", None)
        if texts is None:
            return None
        for row, text in enumerate(texts):
            if text is None:
                raise DataError(f"utterance `{table.utterance_id(row)}` has no transcript.",
                                where=table.where(row),
                                hint="Every utterance needs a transcript when `data.labels` is "
                                     "set (or set `data.labels: null`).")
        return list(texts)

    # ---------------------------------------------------------------- the kind's interface
    def signal(self) -> Signal:
        return waveform_signal(self.config.sample_rate)

    def has_split(self, split: str) -> bool:
        return self.config.manifest(split) is not None

    def location(self, split: str) -> str:
        """The configured path of ``split``; DataError saying how to set it when it is not."""
        if split not in SPLITS:
            raise ConfigError(f"unknown data split `{split}`.", hint=did_you_mean(split, SPLITS))
        path = self.config.manifest(split)
        if path is None:
            raise DataError(f"no `{split}` split is set for the `{self.config.name}` data "
                            "source.", key=f"data.{split}",
                            hint=f"Set `data.{split}` ({self._field_help(split)}).")
        return path

    def _field_help(self, split: str) -> str:
        import attrs

        return attrs.fields_dict(type(self.config))[split].metadata.get("help", "")

    def label_lines(self, split: str, table: Manifest) -> tuple[str, list[str] | None]:
        """``(where, lines)``: the labels of ``table`` made from its transcripts (``lines``
        None means: read the label file ``where``, as fairseq manifests do)."""
        texts = self.transcripts(split, table)
        if texts is None:
            raise DataError(f"`data.labels: {self.config.labels}` asks for labels, but the "
                            f"`{self.config.name}` source of `{table.path}` has no "
                            "transcripts.", key="data.labels",
                            hint="Set `data.labels: null` for unlabelled audio.")
        return table.path, [as_label(t, self.config.labels) for t in texts]

    def dictionary(self):
        """The label dictionary: ``data.dictionary``, else one made from the train split's
        labels (symbols by frequency), or None without labels."""
        from .labels import load_dictionary

        cfg = self.config
        if cfg.labels is None:
            return None
        if cfg.dictionary:
            return load_dictionary(cfg.dictionary)
        split = next((s for s in SPLITS if self.has_split(s)), "train")
        where, lines = self.label_lines(split, self.table(split))
        if lines is None:
            raise DataError(f"no dictionary for the labels of `{where}`.", key="data.dictionary",
                            hint="Set `data.dictionary`.")
        return dictionary_of(lines)

    def dataset(self, split: str, *, min_samples: int = 0, labels: bool = True,
                dictionary: Any = None, whole: bool = False):
        """The :class:`~w2v.data.dataset.AudioDataset` of ``split``.

        ``whole``: every utterance at full length (evaluation: no ``max_sample_size``
        filter, and labels need no padding setting).
        """
        cfg = self.config
        table = self.table(split)
        label_file = lines = None
        if labels and cfg.labels is not None:
            if not cfg.pad and not whole:
                raise ConfigError("labelled batches must be padded, not cropped (a crop would "
                                  "cut the audio its label describes).", key="data.pad",
                                  hint="Set `data.pad: true`, or `data.labels: null`.")
            label_file, lines = self.label_lines(split, table)
            if dictionary is None:
                dictionary = self.dictionary()
        dataset = self.dataset_class(table, sample_rate=cfg.sample_rate,
                                     min_samples=min_samples,
                                     min_sample_size=cfg.min_sample_size,
                                     max_sample_size=None if whole else cfg.max_sample_size,
                                     labels=label_file, label_lines=lines,
                                     dictionary=dictionary, bad_input=cfg.bad_input)
        dataset.skipped[:0] = getattr(table, "skipped", [])
        if cfg.bad_input == "skip":
            dataset.skip_budget = SkipBudget(
                table.path, len(table) + len(getattr(table, "skipped", [])), cfg.max_skipped,
                key=f"data.{split}", root=table.root if type(table) is Manifest else None)
            dataset.skip_budget.at_load(dataset.skipped, usable=len(dataset))
        if len(dataset) == 0:
            raise DataError(f"`{table.path}` has no usable utterances ({len(dataset.skipped)} "
                            "left out).", key=f"data.{split}",
                            hint="Check `data.min_sample_size` / `data.max_sample_size`, and "
                                 "the files it lists.")
        return dataset

    def loader(self, split: str, *, rank: int = 0, world_size: int = 1, epoch: int = 0,
               train: bool = True, min_samples: int = 0, dictionary: Any = None,
               labels: bool = True):
        """A loader of :class:`~w2v.interfaces.Batch` es over ``split`` and its sampler (see
        :func:`build_loader`)."""
        from .loader import loader_over

        dataset = self.dataset(split, min_samples=min_samples, labels=labels,
                               dictionary=dictionary)
        return loader_over(dataset, self.config, rank=rank, world_size=world_size, epoch=epoch,
                           train=train)


def as_label(text: str, kind: str) -> str:
    """A transcript as a label line: letters (``ltr``), words (``wrd``) or, for ``phn``,
    the text as given (space-separated phones)."""
    from .labels import letters, normalize_words

    if kind == "ltr":
        return letters(text)
    if kind == "wrd":
        return normalize_words(text)
    return " ".join(text.split())


def dictionary_of(lines: Sequence[str]):
    """A dictionary of every symbol of ``lines``, most frequent first (ties by symbol)."""
    from .dictionary import Dictionary

    counts = collections.Counter(s for line in lines for s in line.split())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return Dictionary.from_symbols([s for s, _ in ordered], [n for _, n in ordered])


class SourceTable(Manifest):
    """A split of a non-manifest source as a :class:`Manifest` (absolute paths, root ``""``),
    with what such sources carry besides: ``texts`` (a transcript per row, or None),
    ``speakers`` (or None) and ``skipped`` (rows the bad-input policy left out while the
    table was made, e.g. a missing file whose length is needed for batching)."""

    def __init__(self, path: str, rows: "TableRows"):
        super().__init__(path, "", rows.files, rows.sizes, rows.lines,
                         starts=rows.starts if any(rows.starts) else None, ids=rows.ids)
        self.texts = rows.texts if any(t is not None for t in rows.texts) else None
        self.speakers = rows.speakers if any(x is not None for x in rows.speakers) else None
        self.skipped = rows.skipped


class TableRows:
    """Collects a source's rows; :meth:`add_file` sizes each from the audio file's header
    (cached per file) and applies the bad-input policy to files that cannot be sized."""

    def __init__(self, policy: str):
        self.policy = policy
        self.files: list[str] = []
        self.sizes: list[int] = []
        self.lines: list[int] = []
        self.starts: list[int] = []
        self.ids: list[str] = []
        self.texts: list[str | None] = []
        self.speakers: list[str | None] = []
        self.skipped: list = []
        self._info: dict[str, Any] = {}

    def info(self, path: str, where: str):
        """``soundfile.info`` of ``path``, or None after applying the policy to a bad file."""
        from .audio import audio_info
        from .skips import BadInput, handle

        if path not in self._info:
            try:
                self._info[path] = audio_info(path)
            except BadInput as bad:
                self._info[path] = bad
        got = self._info[path]
        if isinstance(got, BadInput):
            handle(got.at(where), self.policy, self.skipped)
            return None
        return got

    def add(self, *, path: str, size: int, line: int, uid: str, start: int = 0,
            text: str | None = None, speaker: str | None = None) -> None:
        self.files.append(os.path.abspath(path))
        self.sizes.append(int(size))
        self.lines.append(int(line))
        self.starts.append(int(start))
        self.ids.append(uid)
        self.texts.append(text)
        self.speakers.append(speaker)

    def add_file(self, *, path: str, where: str, line: int, uid: str, start_s: float = 0.0,
                 end_s: float | None = None, text: str | None = None,
                 speaker: str | None = None, overshoot_s: float = 0.5) -> None:
        """A whole file, or its segment ``start_s:end_s`` seconds (``end_s`` None or negative:
        to the end; an end up to ``overshoot_s`` past the file is clipped, as Kaldi's
        extract-segments does)."""
        from .skips import BadInput, handle

        info = self.info(path, where)
        if info is None:
            return
        rate, frames = int(info.samplerate), int(info.frames)
        start = int(round(start_s * rate))
        stop = frames if end_s is None or end_s < 0 else int(round(end_s * rate))
        if stop > frames and stop - frames <= overshoot_s * rate:
            stop = frames
        if not 0 <= start < stop <= frames:
            handle(BadInput("size-mismatch", path, f"segment {start_s:g}-{end_s:g} s lies "
                                                   f"outside the file's {frames / rate:g} s",
                            where=where), self.policy, self.skipped)
            return
        self.add(path=path, size=stop - start, line=line, uid=uid, start=start, text=text,
                 speaker=speaker)


class FairseqSource(AudioSource):
    """fairseq manifests (``train.tsv``) with ``.ltr``/``.wrd`` labels beside them (the
    default source)."""

    Config = DataConfig

    def table(self, split: str) -> Manifest:
        from .loader import resolve_manifest
        from .manifest import read_manifest

        return read_manifest(resolve_manifest(self.config, split))

    def label_lines(self, split: str, table: Manifest) -> tuple[str, list[str] | None]:
        from .labels import label_path

        return label_path(table.path, self.config.labels), None

    def dictionary(self):
        from .labels import dictionary_path, load_dictionary
        from .loader import resolve_manifest

        cfg = self.config
        if cfg.labels is None:
            return None
        return load_dictionary(cfg.dictionary or dictionary_path(resolve_manifest(cfg, "train"),
                                                                 cfg.labels))

    def transcripts(self, split: str, table: Manifest) -> list[str] | None:
        """The ``.wrd`` words beside the manifest (or the words of its ``.ltr``), if present."""
        from .dictionary import letters_to_words
        from .labels import label_path, read_label_lines

        for ext in ("wrd", "ltr"):
            path = label_path(table.path, ext)
            if os.path.isfile(path):
                lines = read_label_lines(path, table)
                return lines if ext == "wrd" else [letters_to_words(x) for x in lines]
        return None


def build_dataset(cfg: DataConfig, split: str, *, min_samples: int = 0, labels: bool = True,
                  dictionary: Any = None) -> AudioDataset:
    """The :class:`AudioDataset` of ``split`` of the waveform source ``cfg`` names (labels
    when ``labels`` and ``cfg.labels``)."""
    return open_source(cfg).dataset(split, min_samples=min_samples, labels=labels,
                                    dictionary=dictionary)


def build_loader(cfg: DataConfig, split: str, *, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, train: bool = True, min_samples: int = 0, labels: bool = True,
                 dictionary: Any = None) -> tuple[AudioLoader, BucketBatchSampler]:
    """A DataLoader over ``split`` and its batch sampler.

    Args:
        cfg: the ``data:`` section of a waveform source (fairseq, kaldi, lhotse, hf_dataset).
        split: ``train``, ``valid`` or ``test``.
        rank, world_size: this process's shard.
        epoch: first epoch (the sampler's :meth:`~BucketBatchSampler.load_state_dict`
            overrides it on resume).
        train: shuffled batches and random crops (False: fixed order, offset 0).
        min_samples: the model's receptive field in samples; shorter audio is a bad input.
        labels: load ``cfg.labels`` (False for pretraining on a labelled corpus).
        dictionary: label dictionary; default ``cfg.dictionary`` or
            ``dict.<labels>.txt`` beside the manifest.

    Returns:
        ``(loader, sampler)``: call ``sampler.set_epoch(e)`` before each epoch and
        ``sampler.mark_consumed()`` after each update; save ``sampler.state_dict()``.
    """
    return open_source(cfg).loader(split, rank=rank, world_size=world_size, epoch=epoch,
                                   train=train, min_samples=min_samples, labels=labels,
                                   dictionary=dictionary)
