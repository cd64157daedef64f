"""The ``lhotse`` data source: Lhotse cut manifests (``cuts.jsonl.gz``), read without lhotse.

Each line is a cut: ``{"id", "start", "duration", "recording": {"sources":
[{"type": "file", "source": PATH}], "sampling_rate", ...}, "supervisions":
[{"start", "duration", "text", "speaker"}, ...]}`` (``start`` in seconds, the
cut's within its recording, each supervision's within the cut). A cut is one
utterance: the segment of its recording's file; its transcript is the text of
its supervisions in time order. Recordings that are not files (URLs, commands,
in-memory audio) and mixed cuts are refused with the line that holds them.
"""

from __future__ import annotations

import gzip
import json

import attrs

from w2v.config import field
from w2v.data.config import DataConfig
from w2v.data.sources import AudioSource, SourceTable, TableRows
from w2v.errors import DataError


@attrs.define(kw_only=True)
class LhotseConfig(DataConfig):
    name: str = field("lhotse", "the data source (`w2vrun list data_source`)")
    train: str | None = field(None, "training cuts (`cuts.jsonl.gz` or `.jsonl`)")
    valid: str | None = field(None, "validation cuts")
    test: str | None = field(None, "test cuts")
    dictionary: str | None = field(None, "label dictionary (fairseq `symbol count` lines); null: "
                                         "the symbols of the train split's labels")


def read_cuts(path: str):
    """``(line number, cut dict)`` of every non-blank line of a (gzipped) JSON-lines file."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"not a JSON cut ({exc.msg}).",
                                    where=f"{path}:{number}") from None
    except FileNotFoundError:
        raise DataError(f"cut manifest `{path}` does not exist.") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read cut manifest `{path}` ({exc}).") from None


def cut_audio(cut: dict, where: str) -> str:
    """The audio file of a cut's recording (DataError for anything that is not a file)."""
    if cut.get("type", "MonoCut") != "MonoCut" or "recording" not in cut:
        raise DataError(f"cut `{cut.get('id')}` is a {cut.get('type', 'cut without recording')}; "
                        "only single-recording cuts (MonoCut) are read.", where=where,
                        hint="Save the cuts as audio first (lhotse `cuts.save_audios(...)`).")
    sources = cut["recording"].get("sources") or []
    if len(sources) != 1 or sources[0].get("type") != "file":
        kinds = ", ".join(str(s.get("type")) for s in sources) or "none"
        raise DataError(f"recording `{cut['recording'].get('id')}` of cut `{cut.get('id')}` has "
                        f"audio sources of type {kinds}; w2v reads one audio file per recording.",
                        where=where,
                        hint="Save the audio to files first (lhotse `cuts.save_audios(...)`).")
    return sources[0]["source"]


class LhotseSource(AudioSource):
    """Lhotse cut manifests: each cut a segment of a recording file, with supervisions."""

    Config = LhotseConfig

    def table(self, split: str) -> SourceTable:
        path = self.location(split)
        rows = TableRows(self.config.bad_input)
        for number, cut in read_cuts(path):
            where = f"{path}:{number}"
            try:
                start, duration = float(cut["start"]), float(cut["duration"])
                uid = str(cut["id"])
            except (KeyError, TypeError, ValueError):
                raise DataError("a cut needs `id`, `start` and `duration`.", where=where) from None
            audio = cut_audio(cut, where)
            sups = sorted(cut.get("supervisions") or [], key=lambda s: float(s.get("start", 0)))
            texts = [s["text"] for s in sups if s.get("text")]
            speakers = {s["speaker"] for s in sups if s.get("speaker")}
            rows.add_file(path=audio, where=where, line=number, uid=uid, start_s=start,
                          end_s=start + duration, text=" ".join(texts) if texts else None,
                          speaker=speakers.pop() if len(speakers) == 1 else None,
                          overshoot_s=0.01)
        return SourceTable(path, rows)

