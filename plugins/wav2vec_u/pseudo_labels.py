"""The ``pseudo_label`` stage: the chosen wav2vec-U generator transcribes the unlabelled audio
(self-training, the paper's optional last step).

The model ``select_gan`` chose (``from:``) decodes the ``splits`` of the features it reads
(``features:``) exactly as selection does (Viterbi: the best phone per segment, repeats
merged, silence dropped). The stage directory then becomes a feature-shard directory a
``train`` stage over ``data: {name: features, path: <this stage>, labels: phn}`` reads:

* the shards of ``frames:`` (the features a CTC model trains on, e.g. the featurize stage's
  frames before segmentation), linked (relative symlinks; copied where links fail);
* ``<split>.tsv`` (the rows the frames were made from) and ``<split>.phn`` (the pseudo-labels,
  one line a row) for each pseudo-labelled split; ``dict.phn.txt`` (the generator's phones,
  silence left out, counted over the pseudo-labels);
* ``features.json``, whose pseudo-labelled splits record the manifests here and every other
  split (``test``) its own manifest, so the test split keeps its real labels;
* ``pseudo_labels.json``: per split, utterances, phones and empty pseudo-labels.

An utterance whose pseudo-label is empty (the generator predicted only silence) follows the
data bad-input policy (``data.bad_input``): ``fail`` stops naming the files; ``skip`` keeps an
empty line (rows stay aligned with the frames), lists it in ``skipped.tsv`` and within
``data.max_skipped``; the ``features`` source leaves empty label lines out of training.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import attrs

from w2v.config import field, size
from w2v.data.skips import SkipRecord
from w2v.errors import ConfigError, DataError
from w2v.interfaces import Stage
from w2v.plugins.stages.inputs import source_dir

from .text import SILENCE

log = logging.getLogger("w2v")

EMPTY = "empty-label"


@attrs.define(kw_only=True)
class PseudoLabelConfig:
    from_: str = field("select", "the select_gan stage (or a directory with its model.pt) whose "
                                 "generator transcribes")
    features: str = field("segment", "the stage (or directory) of the features the generator "
                                     "reads (the ones it trained on)")
    frames: str = field("featurize", "the stage (or directory) of the features the CTC model "
                                     "trains on; linked beside the pseudo-labels")
    splits: list[str] = field(["train", "valid"], "splits to pseudo-label (every other split "
                                                  "of `frames` keeps its own labels)")
    batch_size: int = size(32, 1, 1 << 16, "utterances per generator forward")


class PseudoLabelStage(Stage):
    """The chosen GAN's Viterbi phones of the unlabelled audio, as CTC training labels."""

    Config = PseudoLabelConfig

    def run(self, context) -> None:
        from w2v import load_pretrained
        from w2v.checkpoint_formats import MODEL_FILE
        from w2v.plugins.data.shards import feature_splits, load_features, read_meta, write_meta

        from .select_stage import decode

        cfg = self.config
        if not cfg.splits:
            raise ConfigError("`splits` is empty: nothing to pseudo-label.",
                              key=f"stages.{context.stage_id}.splits",
                              hint="Set `splits: [train, valid]`.")
        data = context.sections.data
        model_dir = source_dir(cfg.from_, context, "from")
        features_dir = source_dir(cfg.features, context, "features")
        frames_dir = source_dir(cfg.frames, context, "frames")
        model = load_pretrained(model_dir / MODEL_FILE)
        out = Path(context.stage_dir)
        out.mkdir(parents=True, exist_ok=True)
        present = feature_splits(frames_dir)
        for split in cfg.splits:
            if split not in present:
                raise DataError(f"`{frames_dir}` has no features of split `{split}` to "
                                "pseudo-label.", key=f"stages.{context.stage_id}.splits",
                                hint=f"Featurized splits there: {', '.join(present) or 'none'}.")
        meta = read_meta(frames_dir)
        meta["splits"] = dict(meta.get("splits", {}))
        labels: dict[str, list[list[str]]] = {}
        summary = {"model": str(model_dir), "chosen": _chosen(model_dir), "splits": {}}
        skipped: list[SkipRecord] = []
        for split in cfg.splits:
            frames, features = load_features(frames_dir, split), load_features(features_dir,
                                                                               split)
            _check_same_rows(frames, features, split)
            hyps = decode(model, features, model.dictionary, cfg.batch_size)
            manifest = out / f"{split}.tsv"
            _write_manifest(frames, meta, split, manifest)
            empty = empty_pseudo_labels(hyps, frames, str(manifest))
            enforce_policy(empty, len(hyps), split, data.bad_input, data.max_skipped,
                           key=f"stages.{context.stage_id}")
            skipped += empty
            write_pseudo_labels(out / f"{split}.phn", hyps)
            labels[split] = hyps
            meta["splits"][split] = {**meta["splits"].get(split, {}), "manifest": str(manifest)}
            summary["splits"][split] = {"utterances": len(hyps),
                                        "phones": sum(len(h) for h in hyps),
                                        "empty": len(empty)}
            log.info("pseudo_label: %s: %d utterances, %d phones, %d empty", split, len(hyps),
                     summary["splits"][split]["phones"], len(empty))
        phone_dictionary(model.dictionary, labels.get(cfg.splits[0], [])).save(
            out / "dict.phn.txt")
        for split in present:
            _link_shards(frames_dir, out, split)
        meta["pseudo_labels"] = {"from": str(model_dir), "features": str(features_dir),
                                 "splits": list(cfg.splits)}
        write_meta(out, meta)
        (out / "pseudo_labels.json").write_text(json.dumps(summary, indent=2) + "\n")
        if skipped:
            from w2v.data.skips import write_skip_report

            log.warning("pseudo_label: %s", write_skip_report(skipped, str(out)))


def write_pseudo_labels(path: Path, hypotheses: list[list[str]]) -> None:
    """One line of space-separated phones per utterance (empty lines kept: rows stay aligned)."""
    path.write_text("".join(" ".join(h) + "\n" for h in hypotheses), encoding="utf-8")


def phone_dictionary(gan_dictionary, hypotheses: list[list[str]]):
    """The generator's phones (specials and silence left out), counted over ``hypotheses``."""
    from w2v.data.dictionary import Dictionary

    counts = Counter(p for h in hypotheses for p in h)
    phones = [s for s in gan_dictionary.symbols[gan_dictionary.nspecial:] if s != SILENCE]
    return Dictionary.from_symbols(phones, [counts[p] for p in phones])


def empty_pseudo_labels(hypotheses: list[list[str]], frames, manifest: str) -> list[SkipRecord]:
    """A record per utterance whose pseudo-label has no phone."""
    def path(row: int) -> str:
        return os.path.join(frames.root or "", frames.entries[row][0]) if frames.entries \
            else f"{frames.name}[{row}]"

    return [SkipRecord(path=path(row), source=manifest, line=row + 2, reason=EMPTY,
                       detail="the generator predicted only silence")
            for row, hyp in enumerate(hypotheses) if not hyp]


def enforce_policy(empty: list[SkipRecord], total: int, split: str, policy: str,
                   max_skipped: float, key: str) -> None:
    """``fail``: DataError naming the empty pseudo-labels; ``skip``: DataError only when more
    than ``max_skipped`` of the split (or all of it) is empty."""
    from w2v.data.skip_budget import SkipBudget

    if not empty:
        return
    if policy == "fail":
        shown = "; ".join(f"{r.path} (line {r.line})" for r in empty[:3])
        more = f"; ... ({len(empty) - 3} more)" if len(empty) > 3 else ""
        raise DataError(f"{len(empty)} of {total} utterances of split `{split}` got an empty "
                        f"pseudo-label (the generator predicted only silence): {shown}{more}.",
                        key=f"{key}.data.bad_input",
                        hint="Set `data.bad_input: skip` (in this stage and the training stage "
                             "that reads its labels) to leave them out of self-training; they "
                             "are listed in the stage's skipped.tsv.")
    SkipBudget(empty[0].source, total, max_skipped, key=f"{key}.data.max_skipped").at_load(
        empty, total - len(empty))


def _chosen(model_dir: Path) -> str | None:
    results = model_dir / "results.json"
    return json.loads(results.read_text()).get("chosen") if results.is_file() else None


def _check_same_rows(frames, features, split: str) -> None:
    """DataError unless the generator's features and the frames come from the same rows."""
    same = len(frames) == len(features) and (
        not frames.entries or not features.entries or frames.entries == features.entries)
    if not same:
        raise DataError(f"the `{split}` features the generator reads ({len(features)} "
                        f"utterances) and the frames to train on ({len(frames)}) were not made "
                        "from the same manifest rows.",
                        hint="Point `features` and `frames` at stages made from the same "
                             "manifests (segment_features keeps the rows of its featurize stage).")


def _write_manifest(frames, meta: dict, split: str, path: Path) -> None:
    """``path``: the manifest rows the frames of ``split`` were made from."""
    from w2v.data.manifest import write_manifest

    if frames.entries:
        write_manifest(str(path), frames.root or "", frames.entries)
        return
    recorded = (meta.get("splits", {}).get(split) or {}).get("manifest")
    if not recorded or not Path(recorded).is_file():
        raise DataError(f"the `{split}` frames carry no manifest copy (.tsv) and features.json "
                        "records none, so the pseudo-labels cannot be tied to audio rows.",
                        hint="Featurize with the featurize_audio stage, which records both.")
    shutil.copyfile(recorded, path)


def _link_shards(src: Path, out: Path, split: str) -> None:
    """Link (or copy) every shard file of ``split`` from ``src`` into ``out``."""
    stems = [p.with_suffix("") for p in src.glob(f"{split}_*_*.npy")
             if re.fullmatch(rf"{re.escape(split)}_\d+_\d+", p.stem)]
    for f in [s.with_suffix(ext) for s in sorted(stems) for ext in (".npy", ".len", ".tsv",
                                                                     ".done")]:
        if not f.exists():
            continue
        dest = out / f.name
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        try:
            os.symlink(os.path.relpath(f.resolve(), out.resolve()), dest)
        except OSError:
            shutil.copyfile(f, dest)
