"""Discrete units of a quantized model, in fairseq's ``vq-wav2vec_featurize.py`` format.

One line per manifest row in ``<split>.src``; each frame is one token, its
``G`` group codes joined by ``-`` (``"12-301 12-301 7-45"`` for ``G = 2``).
``dict.src.txt`` is the token dictionary (fairseq ``symbol count``, most
frequent first, as ``fairseq-preprocess --only-source`` writes it), so the
files feed fairseq's RoBERTa recipe or the ``units`` data source
(:mod:`w2v.plugins.data.units`) unchanged.

Long files are quantized in chunks (fairseq's ``--max-size``, 1.3M samples)
and the codes joined; a file shorter than the encoder's receptive field gives
an empty line, so lines stay aligned with manifest rows.
"""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import Tensor

from w2v.data.dictionary import Dictionary
from w2v.errors import ConfigError
from w2v.plugins.data.units import DICT_FILE, META_FILE, read_lines  # noqa: F401  (the format)

log = logging.getLogger("w2v")

#: Between the group codes of one token.
GROUP_SEPARATOR = "-"


# ------------------------------------------------------------------ token format
def codes_to_tokens(codes: Tensor) -> list[str]:
    """``codes`` ``[T, G]`` long -> ``T`` tokens ``"c1-c2-..."``."""
    if codes.ndim != 2:
        raise ValueError(f"expected codes [T, G], found shape {list(codes.shape)}")
    return [GROUP_SEPARATOR.join(map(str, row)) for row in codes.tolist()]


def tokens_to_codes(tokens: Sequence[str], groups: int) -> Tensor:
    """Tokens ``"c1-c2"`` -> ``[T, groups]`` long codes; a malformed token is a ValueError."""
    rows = []
    for tok in tokens:
        parts = tok.split(GROUP_SEPARATOR)
        if len(parts) != groups or not all(p.isdigit() for p in parts):
            raise ValueError(f"`{tok}` is not a unit of {groups} groups (`c1{GROUP_SEPARATOR}c2`)")
        rows.append([int(p) for p in parts])
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), groups)


def unit_dictionary(lines: Iterable[str]) -> Dictionary:
    """The fairseq dictionary of the tokens in ``lines``: most frequent first, ties by symbol
    (``fairseq-preprocess`` order), after ``<s> <pad> </s> <unk>``."""
    counts = collections.Counter(tok for line in lines for tok in line.split())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return Dictionary.from_symbols([s for s, _ in ordered], [n for _, n in ordered])


# ------------------------------------------------------------------ quantizing
@torch.inference_mode()
def quantize_wave(model, wave: Tensor, chunk: int) -> Tensor:
    """Codes ``[T, G]`` of one utterance ``wave`` ``[S]``, in chunks of ``chunk`` samples.

    Each chunk is quantized alone (as fairseq's featurizer does); a tail shorter
    than the encoder's receptive field adds no frame.
    """
    if getattr(model, "quantizer", None) is None:
        raise ConfigError("the model has no quantizer, so it has no discrete units.",
                          hint="Export units from a vq-wav2vec (or wav2vec 2.0) model.")
    rf = model.encoder.produces().receptive_field
    pieces = []
    for start in range(0, max(int(wave.shape[0]), 1), chunk):
        piece = wave[start:start + chunk]
        if piece.shape[0] < rf:
            continue
        pieces.append(model.quantize(piece[None])[0])
    if not pieces:
        return torch.zeros(0, model.quantizer.groups, dtype=torch.long)
    return torch.cat(pieces).long().cpu()



def manifest_waves(manifest, sample_rate: int):
    """Each row's waveform ``[S]`` in manifest order; a bad file stops with exit 2 naming the
    file and the manifest line."""
    from w2v.data.audio import read_audio

    for row in range(len(manifest)):
        try:
            wave, _ = read_audio(manifest.audio_path(row), sample_rate=sample_rate)
        except Exception as exc:  # BadInput: name the file and manifest line
            at = getattr(exc, "at", None)
            raise (at(manifest.where(row)).to_error() if at else exc) from None
        yield wave

def export_split(model, manifest_path: str, out_dir: Path, split: str, *, chunk: int,
                 device: str | torch.device = "cpu") -> dict:
    """Write ``<split>.src`` (one line per manifest row) and a copy ``<split>.tsv`` of the
    manifest; returns ``{utterances, tokens, empty}``."""
    from w2v.data.manifest import read_manifest, write_manifest

    manifest = read_manifest(manifest_path)
    lines, tokens, empty = [], 0, 0
    for wave in manifest_waves(manifest, model.sample_rate):
        codes = quantize_wave(model, wave.to(device), chunk)
        lines.append(" ".join(codes_to_tokens(codes)))
        tokens += codes.shape[0]
        empty += int(codes.shape[0] == 0)
    (out_dir / f"{split}.src").write_text("".join(line + "\n" for line in lines),
                                          encoding="utf-8")
    write_manifest(str(out_dir / f"{split}.tsv"), manifest.root, manifest.entries())
    if empty:
        log.warning("%s: %d of %d utterances are shorter than one frame; their lines are empty",
                    manifest_path, empty, len(manifest))
    return {"utterances": len(manifest), "tokens": tokens, "empty": empty}


def export_units(model, manifests: dict[str, str], out_dir: str | Path, *,
                 dictionary_split: str | None = None, chunk_seconds: float = 81.25,
                 device: str | torch.device = "cpu", source: str = "") -> dict:
    """Export the units of every manifest (``{split: path}``) to ``out_dir``.

    Writes ``<split>.src``, ``<split>.tsv``, ``dict.src.txt`` (counted over
    ``dictionary_split``, default the first split) and ``units.json``; returns its content.
    """
    if not manifests:
        raise ConfigError("no split to export.", hint="List splits set in `data:`, e.g. "
                                                      "`splits: [train, valid]`.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dict_split = dictionary_split or next(iter(manifests))
    if dict_split not in manifests:
        raise ConfigError(f"the dictionary split `{dict_split}` is not among the exported "
                          f"splits {list(manifests)}.", key="dictionary_split")
    model = model.to(device).eval()
    chunk = max(int(chunk_seconds * model.sample_rate), model.encoder.produces().receptive_field)
    splits = {}
    for split, path in manifests.items():
        splits[split] = export_split(model, path, out, split, chunk=chunk, device=device)
        log.info("units of `%s`: %d utterances, %d tokens", split, splits[split]["utterances"],
                 splits[split]["tokens"])
    dictionary = unit_dictionary(read_lines(out / f"{dict_split}.src"))
    dictionary.save(out / DICT_FILE)
    local = model.encoder.produces()
    meta = {"groups": int(model.quantizer.groups), "num_vars": int(model.quantizer.num_vars),
            "stride": int(local.stride), "sample_rate": int(model.sample_rate),
            "dictionary_split": dict_split, "dictionary_size": len(dictionary) - dictionary.nspecial,
            "source": source, "splits": splits}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def read_meta(units_dir: str | Path) -> dict:
    """``units.json`` of an export (empty when absent: units made by fairseq)."""
    path = Path(units_dir) / META_FILE
    return json.loads(path.read_text()) if path.exists() else {}
