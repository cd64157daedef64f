"""The four tasks over one model's layers, each probe trained on ``train`` and scored on the
held-out splits.

- ``letters``: CTC over ``.ltr`` (greedy): CER and WER on ``test`` (and ``valid``);
- ``phones``: CTC over ``.phn`` (greedy): PER;
- ``speaker``: utterance classification over the ``speaker`` column of
  ``train.info.tsv``; the demo's valid and test speakers are never in train, so the
  train split's utterances are split per speaker (:func:`speaker_split`);
- ``pnmi``: k-means (:func:`w2v.plugins.clustering.fit_kmeans`) fitted on train frames
  of each layer, units of the valid + test frames scored against the phone at each frame's
  centre (``.align.tsv``); also on the phone probe's weighted sum.

Each trained task has two probes: ``weighted`` (all layers, learned softmax weights) and
``layer`` (the chosen layer alone).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import torch

from .corpus import Split, missing, speakers
from .layers import LayerSplit, frames_of, select
from .training import Budget

TASKS = ("letters", "phones", "speaker", "pnmi")
PROBES = ("weighted", "layer")


@attrs.frozen(kw_only=True)
class Settings:
    """How the probes are built and trained (the same for every model)."""

    budgets: dict[str, Budget]
    lstm_layers: int = 1
    lstm_dim: int = 128
    layer_norm: bool = False
    units: int = 100
    kmeans_frames: int = 20000
    held_out: float = 0.2
    seed: int = 1
    device: str = "cpu"


@attrs.frozen(kw_only=True)
class Context:
    """One model's layers on every split, the chosen layer and where probes write."""

    splits: dict[str, Split]
    data: dict[str, LayerSplit]
    layer: int
    settings: Settings
    out: Path
    log: object = print

    @property
    def names(self) -> list[str]:
        return self.data["train"].names

    @property
    def frame_rate(self) -> float:
        return self.data["train"].frame_rate

    def probe_layers(self, probe: str) -> int | None:
        return None if probe == "weighted" else self.layer

    def probes(self) -> tuple[str, ...]:
        """The probes to train: with one layer the single-layer probe is the weighted one
        (same data, same seed), so only that one trains."""
        return PROBES if len(self.names) > 1 else PROBES[:1]

    def held_out(self) -> list[str]:
        return [s for s in ("valid", "test") if s in self.data]


# ------------------------------------------------------------------ CTC
def ctc_task(ctx: Context, labels: str) -> dict:
    """Letters (``labels="ltr"``) or phones (``"phn"``): both probes, scored greedily."""
    from w2v.data.labels import load_dictionary
    from w2v.plugins.ctc.objective import CTCConfig, CTCObjective
    from w2v.plugins.data.features import labelled_features

    from .probes import CTCProbe
    from .training import score_ctc, train_probe

    train = ctx.splits["train"]
    reason = missing(train, train.beside(labels), train.dictionary(labels), *[
        ctx.splits[s].beside(labels) for s in ctx.held_out()])
    if reason:
        return {"skipped": reason}
    task = "letters" if labels == "ltr" else "phones"
    dictionary = load_dictionary(str(train.dictionary(labels)))
    s = ctx.settings
    out: dict = {"budget": attrs.asdict(s.budgets[task])}
    for probe_name in ctx.probes():
        layer = ctx.probe_layers(probe_name)

        def dataset(split: str):
            return labelled_features(select(ctx.data[split].features, layer=layer),
                                     ctx.splits[split].manifest, labels, dictionary,
                                     what=f"{task} probe, {split}")

        torch.manual_seed(s.seed)
        probe = CTCProbe(1 if layer is not None else len(ctx.names),
                         _dim(ctx),
                         len(dictionary), blank=dictionary.blank, lstm_layers=s.lstm_layers,
                         lstm_dim=s.lstm_dim, layer_norm=s.layer_norm)
        objective = CTCObjective(CTCConfig(apply_mask=False, wer_valid=False), dictionary)
        train_probe(probe, objective, dataset("train"), budget=s.budgets[task],
                    frame_rate=ctx.frame_rate, pad_id=dictionary.pad,
                    run_dir=ctx.out / "probes" / f"{task}-{probe_name}",
                    stage=f"{task}-{probe_name}", seed=s.seed, device=s.device)
        device = next(probe.parameters()).device
        result = {split: score_ctc(probe, dataset(split), dictionary, words=labels == "ltr",
                                   frame_rate=ctx.frame_rate, device=device)
                  for split in ctx.held_out()}
        result["weights"] = probe.layers.normalized().tolist()
        out[probe_name] = result
        ctx.log(f"{task} ({probe_name}): " + _brief(result))
        if probe_name == "weighted":
            out["_probe"] = probe.layers.cpu()   # the phone weights also serve PNMI
    out.setdefault("layer", out["weighted"])
    return out


def _dim(ctx: Context) -> int:
    return int(ctx.data["train"].features.arrays[0].shape[-1])


def _brief(result: dict) -> str:
    test = result.get("test") or next(v for k, v in result.items() if isinstance(v, dict))
    return ", ".join(f"{k} {v:.1f}" for k, v in test.items() if k != "utterances")


# ------------------------------------------------------------------ speakers
def speaker_split(names: np.ndarray, *, held_out: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows for training and testing a speaker classifier on one split's utterances.

    Each speaker with at least two utterances gives ``max(1, round(held_out * n))`` of
    them (at most ``n - 1``), chosen with ``seed``, to the test rows and the rest to the
    training rows; speakers with one utterance are left out. Returns ``(train rows,
    test rows, speakers)`` with the speakers sorted (class ``i`` is ``speakers[i]``).
    """
    rng = np.random.default_rng(seed)
    kept = sorted(s for s, n in zip(*np.unique(names, return_counts=True)) if n >= 2)
    train, test = [], []
    for speaker in kept:
        rows = rng.permutation(np.flatnonzero(names == speaker))
        k = min(max(1, round(held_out * len(rows))), len(rows) - 1)
        test += rows[:k].tolist()
        train += rows[k:].tolist()
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64), kept


def speaker_task(ctx: Context) -> dict:
    """Speaker identification on a per-speaker split of the train split's utterances."""
    from w2v.plugins.data.features import LabelledFeatures

    from .probes import SpeakerObjective, SpeakerProbe
    from .training import score_speakers, train_probe

    train = ctx.splits["train"]
    reason = missing(train, train.beside("info.tsv"))
    if reason:
        return {"skipped": reason}
    features = ctx.data["train"].features
    names = speakers(train, len(features))
    train_rows, test_rows, kept = speaker_split(names, held_out=ctx.settings.held_out,
                                                seed=ctx.settings.seed)
    if len(kept) < 2:
        return {"skipped": f"fewer than two speakers with two or more utterances in "
                           f"{train.reference} ({len(kept)})"}
    ids = np.searchsorted(np.array(kept), names).astype(np.int64)
    s = ctx.settings
    majority = np.bincount(ids[train_rows]).argmax()
    out: dict = {"budget": attrs.asdict(s.budgets["speaker"]), "speakers": len(kept),
                 "train_utterances": len(train_rows), "test_utterances": len(test_rows),
                 "majority": 100.0 * float(np.mean(ids[test_rows] == majority))}
    for probe_name in ctx.probes():
        layer = ctx.probe_layers(probe_name)

        def dataset(rows: np.ndarray) -> LabelledFeatures:
            view = select(features, rows=rows, layer=layer)
            return LabelledFeatures(view, ids[rows], np.arange(len(rows) + 1),
                                    source=str(train.manifest))

        torch.manual_seed(s.seed)
        probe = SpeakerProbe(1 if layer is not None else len(ctx.names), _dim(ctx), len(kept),
                             layer_norm=s.layer_norm)
        train_probe(probe, SpeakerObjective(), dataset(train_rows), budget=s.budgets["speaker"],
                    frame_rate=ctx.frame_rate, pad_id=-1,
                    run_dir=ctx.out / "probes" / f"speaker-{probe_name}",
                    stage=f"speaker-{probe_name}", seed=s.seed, device=s.device)
        device = next(probe.parameters()).device
        result = {"test": score_speakers(probe, dataset(test_rows), frame_rate=ctx.frame_rate,
                                         device=device),
                  "weights": probe.layers.normalized().tolist()}
        out[probe_name] = result
        ctx.log(f"speaker ({probe_name}): " + _brief(result))
    out.setdefault("layer", out["weighted"])
    return out


# ------------------------------------------------------------------ PNMI
def pnmi_task(ctx: Context, weighted=None) -> dict:
    """PNMI of k-means units of every layer (and of ``weighted``, the phone probe's
    :class:`~.probes.WeightedLayers`, when given), with the shuffled-units chance level."""
    from w2v.plugins.clustering import fit_kmeans
    from w2v.plugins.demo.alignment import read_alignments

    from .pnmi import frame_phones, pnmi, shuffled_pnmi

    held = ctx.held_out()
    reason = missing(ctx.splits["train"], *[ctx.splits[s].beside("align.tsv") for s in held]) \
        if held else "no held-out split (--valid/--test) to score"
    if reason:
        return {"skipped": reason}
    s = ctx.settings
    alignments, counts = [], []
    for split in held:
        lengths = ctx.data[split].features.lengths
        lines = read_alignments(ctx.splits[split].beside("align.tsv"))
        if len(lines) != len(lengths):
            return {"skipped": f"`{ctx.splits[split].beside('align.tsv')}` has {len(lines)} "
                               f"lines for {len(lengths)} utterances"}
        alignments += lines
        counts.append(lengths)
    train = ctx.data["train"]
    labels, names = frame_phones(alignments, np.concatenate(counts), stride=train.stride,
                                 centre=train.centre)
    total = int(train.features.lengths.sum())
    g = torch.Generator().manual_seed(s.seed)
    sample = np.sort(torch.randperm(total, generator=g)[:s.kmeans_frames].numpy())

    def score(layer: int | None, transform=None) -> tuple[float, float]:
        fit_on = frames_of(train.features, layer, sample=sample, transform=transform)
        held_x = torch.cat([frames_of(ctx.data[split].features, layer, transform=transform)
                            for split in held])
        units = fit_kmeans(fit_on, s.units, seed=s.seed).assign(held_x)
        return pnmi(units, labels), shuffled_pnmi(units, labels, seed=s.seed)

    per_layer, chance = zip(*[score(i) for i in range(len(ctx.names))])
    out = {"units": s.units, "frames": int(len(labels)), "phones": len(names),
           "per_layer": list(per_layer), "chance_per_layer": list(chance),
           "layer": {"pnmi": per_layer[ctx.layer], "chance": chance[ctx.layer]}}
    if weighted is not None and len(ctx.names) == 1 and not s.layer_norm:
        out["weighted"] = {**out["layer"], "weights": [1.0]}   # the same features
    elif weighted is not None:
        with torch.inference_mode():
            value, floor = score(None, lambda x: weighted(x[:, None])[:, 0])
        out["weighted"] = {"pnmi": value, "chance": floor,
                           "weights": weighted.normalized().tolist()}
    ctx.log("pnmi: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(ctx.names, per_layer)) +
            (f"; phone-weighted {out['weighted']['pnmi']:.3f}" if "weighted" in out else ""))
    return out
