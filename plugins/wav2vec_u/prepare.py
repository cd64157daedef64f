"""wav2vec-U preparation stages (fairseq ``prepare_audio.sh`` / ``prepare_text.sh``).

* ``segment_features``: on an earlier featurize output (``from:``), fit k-means
  (``clusters``) and PCA (``pca_dim``, optionally whitened) on a seeded sample of
  the ``fit_split`` frames, then for every split: PCA-project, average runs of
  consecutive frames in the same cluster, and mean-pool adjacent segments
  (``pool_rate``). Writes the feature shard layout (``<split>_0_1.npy``, ...),
  ``<split>.src`` (cluster ids per frame, one utterance a line), ``kmeans.pt`` and
  ``pca.pt``. wav2vec-U 2.0 skips this stage and trains on the layer features.
* ``prepare_text``: unpaired sentences -> lexicon (espeak-ng per word, or a given
  lexicon file) -> phone dictionary (``min_phone_count``) -> phone sentences with
  ``<SIL>`` inserted (``sil_prob``) -> ``train.phn`` (one sentence a line: a ``units``
  source with ``ext: phn``),
  ``dict.phn.txt``, ``lexicon.lst`` and a phone n-gram ``lm.phones.arpa``; for word
  decoding (:mod:`.words`) ``lexicon.words.lst`` and a word n-gram ``lm.words.arpa``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import attrs
import torch

from w2v.config import choice, field, real, size
from w2v.errors import ConfigError, DataError, did_you_mean
from w2v.interfaces import Stage
from w2v.plugins.stages.inputs import source_dir

from .text import (SILENCE, espeak_lexicon, filter_lexicon, normalise, phone_dictionary,
                   phonemise_with_silence)
from .words import write_word_files

log = logging.getLogger("w2v")


# ------------------------------------------------------------------ audio
@attrs.define(kw_only=True)
class SegmentFeaturesConfig:
    from_: str = field(help="the featurize stage (or a directory of feature shards) to read")
    splits: list[str] = field(["train", "valid", "test"], "featurized splits to transform "
                                                          "(those missing are skipped)")
    fit_split: str = field("train", "the split k-means and PCA are fitted on")
    clusters: int = size(128, 2, 1 << 16, "k-means clusters (fairseq CLUS128)")
    pca_dim: int = size(512, 1, 1 << 14, "PCA dimensions, capped at the feature width")
    whiten: bool = field(False, "scale PCA directions to unit variance (eigen-power -0.5)")
    pool_rate: float = real(0.5, 0.01, 1.0, "mean-pool adjacent segments to this fraction "
                                            "(1 = off)")
    sample_frames: int = size(200_000, 100, 1 << 30, "frames sampled to fit k-means and PCA")
    iterations: int = size(50, 1, 1000, "k-means iterations")
    seed: int = size(0, 0, (1 << 31) - 1, "seed of the sample and k-means")
    segmentation: Literal["kmeans", "alignments"] = choice(
        "kmeans", "`kmeans`: merge runs of equal clusters, then mean-pool (the paper); "
                  "`alignments`: one segment per aligned phone from `<manifest>.align.tsv` "
                  "(the oracle: the GAN given the true segmentation)")


class SegmentFeaturesStage(Stage):
    """k-means + PCA + run merging + mean pooling over featurized splits."""

    Config = SegmentFeaturesConfig

    def run(self, context) -> None:
        from w2v.plugins.clustering import fit_kmeans, fit_pca, mean_pool_pairs, merge_runs
        from w2v.plugins.data.shards import (ShardWriter, feature_splits, load_features,
                                             read_meta, write_meta)

        cfg = self.config
        src = source_dir(cfg.from_, context, "from")
        present = feature_splits(src)
        if cfg.fit_split not in present:
            raise DataError(f"`{src}` has no features of split `{cfg.fit_split}` to fit k-means "
                            f"and PCA on.", hint=did_you_mean(cfg.fit_split, present, "splits"))
        fit = load_features(src, cfg.fit_split)
        sample = _sample_frames(fit, cfg.sample_frames, cfg.seed)
        kmeans = fit_kmeans(sample, cfg.clusters, iterations=cfg.iterations, seed=cfg.seed)
        pca = fit_pca(sample, cfg.pca_dim, whiten=cfg.whiten)
        out = context.stage_dir
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"centroids": kmeans.centroids}, out / "kmeans.pt")
        torch.save({"mean": pca.mean, "matrix": pca.matrix}, out / "pca.pt")
        meta = {**read_meta(src), "dim": int(pca.matrix.shape[1]), "segmented": True,
                "made_by": {"stage": "segment_features", "clusters": cfg.clusters,
                            "pca_dim": int(pca.matrix.shape[1]), "whiten": cfg.whiten,
                            "pool_rate": cfg.pool_rate, "from": str(src)},
                "splits": {}}
        for split in [s for s in cfg.splits if s in present]:
            feats = load_features(src, split)
            writer = ShardWriter(out, split, dim=int(pca.matrix.shape[1]))
            made_from = read_meta(src).get("splits", {}).get(split, {}).get("manifest")
            aligned = _alignments(made_from, len(feats), split) \
                if cfg.segmentation == "alignments" else None
            ids_lines = []
            for row in range(len(feats)):
                x = torch.from_numpy(feats.frames(row).astype("float32"))
                ids = kmeans.assign(x)
                ids_lines.append(" ".join(map(str, ids.tolist())))
                if aligned is not None:
                    ids = segment_ids(aligned[row], len(x), int(meta.get("stride") or 320))
                    writer.add(merge_runs(pca.apply(x), ids))
                else:
                    writer.add(mean_pool_pairs(merge_runs(pca.apply(x), ids), cfg.pool_rate))
            counts = writer.finish(feats.root, feats.entries or None)
            (out / f"{split}.src").write_text("".join(f"{line}\n" for line in ids_lines))
            meta["splits"][split] = {**counts, **({"manifest": made_from} if made_from else {})}
            log.info("segment_features: %s: %d utterances, %d frames -> %d segments", split,
                     counts["utterances"], int(feats.lengths.sum()), counts["frames"])
        write_meta(out, meta)


def _alignments(manifest: str | None, rows: int, split: str) -> list[list[tuple[int, int]]]:
    """Per utterance, the ``(start, end)`` samples of each aligned segment, from
    ``<manifest>.align.tsv`` (``PHONE,START,END`` segments a line)."""
    path = Path(manifest).with_suffix(".align.tsv") if manifest else None
    if path is None or not path.is_file():
        raise DataError(f"`segmentation: alignments` needs `{path or '<manifest>.align.tsv'}` "
                        f"for split `{split}`, which does not exist.",
                        hint="Use a corpus with frame-level alignments (the demo's labelled "
                             "splits have them) or `segmentation: kmeans`.")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != rows:
        raise DataError(f"`{path}` has {len(lines)} lines for {rows} utterances of `{split}`.")
    return [[(int(t.rsplit(",", 2)[1]), int(t.rsplit(",", 2)[2])) for t in line.split()]
            for line in lines]


def segment_ids(segments: list[tuple[int, int]], frames: int, stride: int) -> torch.Tensor:
    """``[frames]`` the index of the segment holding each frame's first sample (frames past
    the last segment join it)."""
    ends = torch.tensor([e for _, e in segments] or [1 << 62])
    starts = torch.arange(frames) * stride
    return torch.searchsorted(ends, starts, right=True).clamp(max=len(ends) - 1)


def _sample_frames(features, limit: int, seed: int) -> torch.Tensor:
    """Up to ``limit`` frames of ``features`` drawn without replacement, float32 ``[N, D]``."""
    total = int(features.lengths.sum())
    g = torch.Generator().manual_seed(seed)
    every = torch.cat([torch.from_numpy(a.astype("float32")) for a in features.arrays]) \
        if total <= limit else None
    if every is not None:
        return every
    picks = torch.randperm(total, generator=g)[:limit].sort().values
    flat = torch.cat([torch.from_numpy(a.astype("float32")) for a in features.arrays])
    return flat[picks]


@attrs.define(kw_only=True)
class KmeansTargetsConfig:
    from_: str = field(help="the featurize stage (or directory) of the target features (MFCCs)")
    splits: list[str] = field(["train"], "featurized splits to label")
    clusters: int = size(64, 2, 1 << 16, "k-means clusters (wav2vec-U 2.0: 64)")
    sample_frames: int = size(200_000, 100, 1 << 30, "frames sampled to fit k-means")
    iterations: int = size(50, 1, 1000, "k-means iterations")
    seed: int = size(0, 0, (1 << 31) - 1, "seed of the sample and k-means")


class KmeansTargetsStage(Stage):
    """k-means ids of every frame (``<split>.km``: one utterance a line), the targets of
    wav2vec-U 2.0's auxiliary loss (HuBERT's ``simple_kmeans`` on MFCCs)."""

    Config = KmeansTargetsConfig

    def run(self, context) -> None:
        from w2v.plugins.clustering import fit_kmeans
        from w2v.plugins.data.shards import load_features

        cfg = self.config
        src = source_dir(cfg.from_, context, "from")
        first = load_features(src, cfg.splits[0])
        kmeans = fit_kmeans(_sample_frames(first, cfg.sample_frames, cfg.seed), cfg.clusters,
                            iterations=cfg.iterations, seed=cfg.seed)
        out = context.stage_dir
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"centroids": kmeans.centroids}, out / "kmeans.pt")
        for split in cfg.splits:
            feats = load_features(src, split)
            lines = [" ".join(map(str, kmeans.assign(torch.from_numpy(
                feats.frames(r).astype("float32"))).tolist())) for r in range(len(feats))]
            (out / f"{split}.km").write_text("".join(f"{line}\n" for line in lines))


def read_targets(path: Path) -> list[torch.Tensor]:
    """The id rows of a ``.km`` file."""
    return [torch.tensor([int(t) for t in line.split()], dtype=torch.long)
            for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ text
@attrs.define(kw_only=True)
class PrepareTextConfig:
    text: str | None = field(None, "unpaired text: one sentence a line (or `demo:unpaired` for "
                                   "the demo corpus' unpaired sentences)")
    lexicon: str | None = field(None, "a lexicon file (`WORD p1 p2 ...` a line); null: "
                                      "espeak-ng spells each word")
    language: str = field("en-us", "espeak-ng language of the lexicon")
    min_phone_count: int = size(1, 1, 1 << 30, "phones seen fewer times are left out of the "
                                               "dictionary, with the words that use them")
    sil_prob: float = real(0.25, 0.0, 1.0, "probability of <SIL> between words (w2vu 0.25, "
                                           "w2vu2 0.5)")
    surround: bool = field(True, "<SIL> at both ends of each sentence")
    lm_order: int = size(4, 1, 6, "order of the phone n-gram used for checkpoint selection")
    word_lm_order: int | None = size(4, 1, 6, "order of the word n-gram (`lm.words.arpa`, with "
                                              "the lexicon `lexicon.words.lst`) for word "
                                              "decoding; null: neither is written")
    max_sentences: int | None = size(None, 1, 1 << 30, "use at most this many sentences")
    seed: int = size(0, 0, (1 << 31) - 1, "seed of the silence draws")


class PrepareTextStage(Stage):
    """Unpaired sentences -> phone sentences, dictionary, lexicon and phone LM."""

    Config = PrepareTextConfig

    def run(self, context) -> None:
        from w2v.plugins.ctc.lm import train_kneser_ney

        cfg = self.config
        if cfg.text is None:
            raise ConfigError("no unpaired text is set for wav2vec-U's text preparation.",
                              key=f"stages.{context.stage_id}.text",
                              hint=f"Set `stages.{context.stage_id}.text=FILE` (one sentence a "
                                   "line), or run recipes/demo_wav2vec_u.yaml.")
        lines = _read_text(cfg.text, context)
        if cfg.max_sentences is not None:
            lines = lines[:cfg.max_sentences]
        sentences = [normalise(line).split() for line in lines]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise DataError(f"`{cfg.text}` holds no sentence with a word in it.")
        words = {w for s in sentences for w in s}
        lexicon = _read_lexicon(cfg.lexicon) if cfg.lexicon else \
            espeak_lexicon(words, cfg.language)
        dictionary = phone_dictionary(lexicon, sentences, cfg.min_phone_count)
        lexicon = filter_lexicon(lexicon, dictionary)
        text = phonemise_with_silence(sentences, lexicon, sil_prob=cfg.sil_prob,
                                      surround=cfg.surround, seed=cfg.seed)
        if not text.sentences:
            raise DataError(f"no sentence of `{cfg.text}` could be spelled in phones.",
                            hint="Check the lexicon (or the espeak-ng language).")
        out = context.stage_dir
        out.mkdir(parents=True, exist_ok=True)
        dictionary.save(out / "dict.phn.txt")
        (out / "train.phn").write_text("".join(" ".join(s) + "\n" for s in text.sentences))
        (out / "lexicon.lst").write_text(
            "".join(f"{w}\t{' '.join(p)}\n" for w, p in sorted(lexicon.items())))
        lm_text = [" ".join(p for p in s if p != SILENCE) for s in text.sentences]
        train_kneser_ney(lm_text, order=cfg.lm_order).write_arpa(out / "lm.phones.arpa")
        word_lm = {} if cfg.word_lm_order is None else \
            write_word_files(out, sentences, lexicon, cfg.word_lm_order)
        summary = {"sentences": len(lines), "phonemised": len(text.sentences),
                   "left_out": text.left_out, "phones": len(dictionary) - dictionary.nspecial,
                   "words": len(words), "lexicon": len(lexicon), **word_lm}
        (out / "text.json").write_text(json.dumps(summary, indent=2) + "\n")
        if text.left_out:
            log.warning("prepare_text: %d of %d sentences left out (a word without a spelling "
                        "in phones of the dictionary)", text.left_out, len(sentences))


def _read_text(ref: str, context) -> list[str]:
    from w2v.data.loader import resolve_corpus

    path = Path(resolve_corpus(ref, f"stages.{context.stage_id}.text")).expanduser()
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    except OSError as exc:
        raise DataError(f"cannot read the unpaired text `{path}` ({exc.strerror}).",
                        key=f"stages.{context.stage_id}.text") from None


def _read_lexicon(path: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        items = line.split()
        if not items:
            continue
        if len(items) < 2:
            raise DataError(f"`{path}` line {n}: `{line}` has a word but no phones.")
        out.setdefault(items[0].upper(), items[1:])
    return out
