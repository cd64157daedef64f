"""Evidence for issue 8 (docs/vq-wav2vec.md), measured on the demo corpus. Not a test.

    python tests/benchmarks/evidence_vq_wav2vec.py --out DIR   # ~7.5 min on 2 idle CPU cores

Two measurements, both through w2v's own recipes and stages:

1. **Do vq-wav2vec units carry phonetic information?** A small vq-wav2vec (k-means,
   ``recipes/demo_sized/vq_wav2vec_kmeans.yaml``; the Gumbel variant collapses at this
   scale, see docs/vq-wav2vec.md) is pretrained on ``demo:unlabeled``;
   the units of the held-out ``valid`` + ``test`` splits (sentences and speakers never
   seen in training) are exported with the ``export_units`` code path and scored by
   phone-normalised mutual information against the corpus's frame-level phone
   alignments: ``PNMI = I(phone; unit) / H(phone)`` (HuBERT's measure; the phone of a
   frame is the one at the centre of its receptive field). Baselines at equal numbers
   of *used* units (distinct units on the held-out frames):

   * the same vq-wav2vec network, randomly initialised (seeded, untrained);
   * k-means on 80-bin log-mel frames (25 ms / 10 ms, per-utterance CMVN), fitted on
     ``demo:unlabeled``, K searched until the used units match.

   A system with more used units is brought down to the common count by merging
   each of its rarest units into the nearest (L2 between code vectors) of its most
   frequent ones. PNMI is biased upwards by the finite sample (more units, more
   bias), so each row also gives the PNMI of the same units shuffled over the
   frames (the chance level of that unit histogram).

2. **wav2vec 1.0 context features against log-mel for a low-resource CTC model.**
   A small wav2vec 1.0 (``recipes/demo_sized/wav2vec_base.yaml``) is pretrained on
   ``demo:unlabeled``; its context features c and 80-bin log-mel features (CMVN) of
   the labelled splits (10 min train) are dumped with ``featurize_audio``; the same
   small CTC model (a ``train`` stage over the ``features`` data source: 3 non-causal
   conv blocks + a linear head over phones, ``--labels ltr`` for letters) is trained on
   each with the same budget for each learning rate of a sweep, and an ``evaluate``
   stage decodes ``test`` with it; the learning rate is chosen on ``valid`` (greedy
   unit error rate) and the greedy phone error rate (letters: CER/WER) on ``test`` is
   reported.

Everything lands in DIR (run directories, ``evidence.json``, ``evidence.md``).
"""

from __future__ import annotations

import os
import sys


from runs import pin_threads  # noqa: E402  (the scripts' folder is on sys.path)

THREADS = pin_threads(sys.argv[1:])  # before torch loads

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
HELD_OUT = ("valid", "test")


# ------------------------------------------------------------------ PNMI
def pnmi(units: np.ndarray, phones: np.ndarray) -> float:
    """``I(phone; unit) / H(phone)`` of paired frame labels (ints), from the joint counts."""
    _, u = np.unique(units, return_inverse=True)
    _, p = np.unique(phones, return_inverse=True)
    joint = np.zeros((u.max() + 1, p.max() + 1))
    np.add.at(joint, (u, p), 1.0)
    joint /= joint.sum()
    pu, pp = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (pu @ pp)[nz])).sum())
    h = float(-(pp[pp > 0] * np.log(pp[pp > 0])).sum())
    return mi / h


def shuffled_pnmi(units: np.ndarray, phones: np.ndarray, repeats: int = 3) -> float:
    """PNMI of the same units randomly permuted over the frames: the finite-sample floor."""
    rng = np.random.default_rng(0)
    return float(np.mean([pnmi(rng.permutation(units), phones) for _ in range(repeats)]))


def purity(units: np.ndarray, phones: np.ndarray) -> float:
    """Frames whose phone is their unit's most frequent phone (cluster purity)."""
    _, u = np.unique(units, return_inverse=True)
    _, p = np.unique(phones, return_inverse=True)
    joint = np.zeros((u.max() + 1, p.max() + 1))
    np.add.at(joint, (u, p), 1.0)
    return float(joint.max(1).sum() / joint.sum())


# ------------------------------------------------------------------ frames and phones
def held_out_phones(corpus: Path, centre: int, frames: list[int]) -> np.ndarray:
    """Phone ids of every frame of the held-out splits (frame t centred at 160 t + centre)."""
    from w2v.plugins.demo.alignment import frame_labels, read_alignments

    labels = []
    for split in HELD_OUT:
        labels += read_alignments(corpus / f"{split}.align.tsv")
    assert len(labels) == len(frames), (len(labels), len(frames))
    out = []
    for segments, n in zip(labels, frames):
        out += frame_labels(segments, n, hop=160, offset=centre)
    names = sorted(set(out))
    index = {p: i for i, p in enumerate(names)}
    return np.array([index[p] for p in out], dtype=np.int64)


def vq_units(model, corpus: Path, out: Path) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Units of the held-out splits through the export_units code path, as ints, plus each
    unit's code vector."""
    from w2v.data.audio import read_audio
    from w2v.data.manifest import read_manifest
    from w2v.plugins.features.units import export_units, tokens_to_codes

    export_units(model, {s: str(corpus / f"{s}.tsv") for s in HELD_OUT}, out)
    groups, num_vars = model.quantizer.groups, model.quantizer.num_vars
    per_utt, vectors = [], {}
    for split in HELD_OUT:
        manifest = read_manifest(str(out / f"{split}.tsv"))
        lines = (out / f"{split}.src").read_text().splitlines()
        for row, line in enumerate(lines):
            codes = tokens_to_codes(line.split(), groups).numpy()
            ids = (codes * num_vars ** np.arange(groups)[::-1]).sum(1)
            per_utt.append(ids)
            new = [i for i in np.unique(ids) if int(i) not in vectors]
            if new:
                wave, _ = read_audio(manifest.audio_path(row), sample_rate=16000)
                with torch.inference_mode():
                    enc = model.encode(wave[None])
                    vec = model.quantizer(enc.features).vectors[0].numpy()
                for i in new:
                    vectors[int(i)] = vec[np.flatnonzero(ids == i)[0]]
    return per_utt, vectors


def reduce_units(units: np.ndarray, vectors: dict[int, np.ndarray], count: int) -> np.ndarray:
    """Keep the ``count`` most frequent units; map every other unit to the nearest kept one
    (L2 between code vectors)."""
    ids, freq = np.unique(units, return_counts=True)
    if len(ids) <= count:
        return units
    order = ids[np.argsort(-freq, kind="stable")]
    kept, rest = order[:count], order[count:]
    kv = np.stack([vectors[int(i)] for i in kept])
    mapping = {int(i): int(i) for i in kept}
    for i in rest:
        mapping[int(i)] = int(kept[np.argmin(((kv - vectors[int(i)]) ** 2).sum(1))])
    return np.array([mapping[int(u)] for u in units], dtype=np.int64)


# ------------------------------------------------------------------ k-means on log-mel
def logmel_frames(manifest: Path, max_seconds: float | None = None) -> list[np.ndarray]:
    from w2v.data.audio import read_audio
    from w2v.data.manifest import read_manifest
    from w2v.plugins.frontends.logmel import LogMelEncoder

    enc = LogMelEncoder(LogMelEncoder.Config(num_mel_bins=80, cmvn=True))
    m = read_manifest(str(manifest))
    out, seconds = [], 0.0
    for row in range(len(m)):
        wave, _ = read_audio(m.audio_path(row), sample_rate=16000)
        with torch.inference_mode():
            out.append(enc(wave[None]).features[0].numpy())
        seconds += wave.shape[0] / 16000
        if max_seconds is not None and seconds >= max_seconds:
            break
    return out


def kmeans(x: torch.Tensor, k: int, iters: int = 25, seed: int = 0) -> torch.Tensor:
    """Centroids ``[k, D]``: k-means++ initialisation, then Lloyd iterations."""
    g = torch.Generator().manual_seed(seed)
    centroids = [x[torch.randint(len(x), (1,), generator=g)]]
    dist = ((x - centroids[0]) ** 2).sum(1)
    for _ in range(1, k):
        pick = torch.multinomial(dist / dist.sum(), 1, generator=g)
        centroids.append(x[pick])
        dist = torch.minimum(dist, ((x - x[pick]) ** 2).sum(1))
    c = torch.cat(centroids)
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        moved = counts > 0
        c[moved] = sums[moved] / counts[moved, None]
    return c


def kmeans_units(train: np.ndarray, held_out: np.ndarray, used: int, seed: int = 0
                 ) -> tuple[np.ndarray, int]:
    """Held-out k-means units with ``used`` distinct units in use (K searched upwards)."""
    x = torch.from_numpy(train).float()
    y = torch.from_numpy(held_out).float()
    k = used
    for _ in range(8):
        units = torch.cdist(y, kmeans(x, k, seed=seed)).argmin(1).numpy()
        n = len(np.unique(units))
        if n >= used:
            break
        k = int(math.ceil(k * used / max(n, 1))) + 1
    if n > used:  # overshoot: merge the rarest into their nearest kept centroid
        c = kmeans(x, k, seed=seed).numpy()
        units = reduce_units(units, {i: c[i] for i in range(k)}, used)
    return units, k


# ------------------------------------------------------------------ running recipes
def run_recipe(recipe: Path, out: Path, *overrides: str, stages: str | None = None) -> None:
    from w2v.cli import main

    args = [str(recipe), "--out", str(out), *overrides]
    if stages:
        args += ["--stages", stages]
    print(f"[evidence] w2vrun {' '.join(shlex.quote(a) for a in args)}", flush=True)
    code = main(args)
    if code != 0:
        raise SystemExit(f"w2vrun failed with exit code {code}")


def pretrain_overrides(updates: int, crop_seconds: float, batch_seconds: float) -> list[str]:
    crop, batch = int(crop_seconds * 16000), int(batch_seconds * 16000)
    return [f"trainer.max_updates={updates}", "trainer.log_interval=25",
            "trainer.valid_interval=0", f"trainer.save_interval={updates}", "data.valid=null",
            f"data.max_sample_size={crop}", f"data.max_tokens={batch}",
            f"data.min_sample_size={min(crop, 16000)}"]


# ------------------------------------------------------------------ 1. PNMI
def measure_pnmi(args, corpus: Path) -> dict:
    import w2v
    from w2v.build import build_model
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages

    out = args.out / "vq"
    recipe = RECIPES / "demo_sized" / "vq_wav2vec_kmeans.yaml"
    started = time.time()
    run_recipe(recipe, out, *pretrain_overrides(args.vq_updates, args.crop_seconds,
                                                args.batch_seconds))
    pretrain_s = time.time() - started
    trained = w2v.load_pretrained(out / "pretrain")
    plan = plan_stages(load_recipe(str(recipe), []))["pretrain"]
    torch.manual_seed(args.seed)
    random_init = build_model(plan.sections.model).eval()

    units_t, vec_t = vq_units(trained, corpus, out / "units_trained")
    units_r, vec_r = vq_units(random_init, corpus, out / "units_random")
    frames = [len(u) for u in units_t]
    rf = trained.encoder.produces().receptive_field
    phones = held_out_phones(corpus, rf // 2, frames)
    ut, ur = np.concatenate(units_t), np.concatenate(units_r)

    train_mel = np.concatenate(logmel_frames(corpus / "unlabeled.tsv", args.kmeans_seconds))
    held_mel = [logmel_frames(corpus / f"{s}.tsv") for s in HELD_OUT]
    held_mel = [f for split in held_mel for f in split]
    # log-mel frame t reads samples [160 t, 160 t + 400): its centre is 160 t + 200
    mel_phones = held_out_phones(corpus, 200, [len(f) for f in held_mel])
    n_t, n_r = len(np.unique(ut)), len(np.unique(ur))
    rows = []

    def add(block: str, system: str, units: np.ndarray, ph: np.ndarray, note: str = "") -> None:
        rows.append({"block": block, "system": system, "used_units": int(len(np.unique(units))),
                     "pnmi": pnmi(units, ph), "pnmi_shuffled": shuffled_pnmi(units, ph),
                     "purity": purity(units, ph), "frames": int(len(units)), "note": note})
        r = rows[-1]
        print(f"[evidence] {block:<10} {system:<34} units {r['used_units']:>5}  "
              f"PNMI {r['pnmi']:.3f} (shuffled {r['pnmi_shuffled']:.3f})", flush=True)

    mel = np.concatenate(held_mel)
    for count in sorted({n_t, min(n_t, n_r)}, reverse=True):
        block = f"{count} units"
        add(block, "vq-wav2vec (pretrained)", reduce_units(ut, vec_t, count), phones,
            "" if count == n_t else f"reduced from {n_t}")
        if n_r >= count:
            add(block, "vq-wav2vec (random init)", reduce_units(ur, vec_r, count), phones,
                "" if count == n_r else f"reduced from {n_r}")
        km, k = kmeans_units(train_mel, mel, count, seed=args.seed)
        add(block, "k-means on log-mel", km, mel_phones, f"K = {k}")
    return {"pretrain_updates": args.vq_updates, "pretrain_seconds": round(pretrain_s, 1),
            "used_units": {"pretrained": n_t, "random_init": n_r},
            "held_out_frames": int(len(ut)), "phones": int(len(np.unique(phones))),
            "rows": rows}


# ------------------------------------------------------------------ 2. CTC on features
def ctc_stage(features: str, lr: float, updates: int, labels: str, max_tokens: int) -> dict:
    """The downstream model, a ``train`` stage over the ``features`` source of the featurize
    stage ``features`` (its ``train``/``valid`` splits): per-utterance CMVN of the frozen
    features, 3 non-causal conv blocks (96 wide, kernel 5), a linear CTC head; Adam (0.9, 0.98),
    tri-stage lr schedule."""
    return {"name": "train", "data": features_source(features, labels, max_tokens),
            "model": {"encoder": {"name": "precomputed", "dim": None, "cmvn": True},
                      "aggregator": {"name": "wav2letter", "layers": [[96, 5]] * 3,
                                     "dropout": 0.1},
                      "head": {"name": "ctc"}},
            "objective": {"name": "ctc", "apply_mask": False},
            "trainer": {"max_updates": updates, "lr": lr, "precision": "fp32",
                        "betas": [0.9, 0.98], "eps": 1.0e-6, "weight_decay": 0.0,
                        "schedule": {"name": "tri_stage", "warmup": 0.1, "hold": 0.4,
                                     "decay": 0.5},
                        "log_interval": 100, "valid_interval": updates,
                        "save_interval": updates, "best_metric": "uer"}}


def decode_stage(model: str, features: str, labels: str, max_tokens: int) -> dict:
    """An ``evaluate`` stage: greedy decoding of the ``test`` features split with the model of
    stage ``model`` (CER/WER, or PER for phones, in ``<stage>/results.json``)."""
    return {"name": "evaluate", "models": [model],
            "data": {**features_source(features, labels, max_tokens), "test": "test"},
            "model": None, "objective": None}


def features_source(features: str, labels: str, max_tokens: int) -> dict:
    """The ``features`` data source over a featurize_audio stage of the labelled splits (its
    features splits are named after the data splits, its labels those of their manifests)."""
    return {"name": "features", "path": features, "train": "train", "valid": "valid",
            "labels": labels, "max_tokens": max_tokens}


def ctc_recipe(args) -> tuple[dict, list[str]]:
    """The evidence recipe over demo_sized/wav2vec_base.yaml: per system and learning rate a
    ``ctc_*`` train stage and its ``test_ctc_*`` evaluate stage; also the CTC stage ids."""
    stages, trained = {}, []
    for features in ("featurize", "featurize_logmel"):
        for lr in args.lrs:
            sid = f"ctc_{'w2v' if features == 'featurize' else 'logmel'}_{lr:g}"
            stages[sid] = ctc_stage(features, lr, args.ctc_updates, args.labels, args.ctc_frames)
            stages[f"test_{sid}"] = decode_stage(sid, features, args.labels, args.ctc_frames)
            trained.append(sid)
    return {"base": str(RECIPES / "demo_sized" / "wav2vec_base.yaml"), "stages": stages}, trained


def measure_ctc(args) -> dict:
    out = args.out / "wav2vec"
    recipe, trained = ctc_recipe(args)
    path = args.out / "wav2vec_evidence.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    started = time.time()
    run_recipe(path, out, *pretrain_overrides(args.w2v_updates, args.crop_seconds,
                                              args.batch_seconds),
               stages="pretrain,featurize,featurize_logmel," + ",".join(recipe["stages"]))
    seconds = time.time() - started
    rows = []
    for sid in trained:
        summary = json.loads((out / sid / "summary.json").read_text())
        result = json.loads((out / f"test_{sid}" / "results.json").read_text())["results"][0]
        rows.append({"stage": sid, "system": "wav2vec c" if "_w2v_" in sid else "log-mel",
                     "lr": float(sid.rsplit("_", 1)[1]), "valid_uer": summary["best_value"],
                     "test_cer": result["cer"], "test_wer": result["wer"],
                     "degenerate": bool(result.get("warning"))})
    chosen = {}
    for system in ("wav2vec c", "log-mel"):
        mine = [r for r in rows if r["system"] == system]
        chosen[system] = min(mine, key=lambda r: (r["valid_uer"] is None, r["valid_uer"]))
    return {"pretrain_updates": args.w2v_updates, "ctc_updates": args.ctc_updates,
            "ctc_frames": args.ctc_frames, "labels": args.labels, "lrs": args.lrs,
            "seconds": round(seconds, 1), "rows": rows, "chosen": chosen}


# ------------------------------------------------------------------ report
def markdown(result: dict) -> str:
    p, c = result["pnmi"], result["ctc"]
    lines = [f"Command: `{result['command']}` ({result['minutes']:.1f} min, "
             f"{result['threads']} threads, {result['machine']})", "",
             f"Held-out frames: {p['held_out_frames']} (valid + test, {p['phones']} phones); "
             f"vq-wav2vec pretrained for {p['pretrain_updates']} updates "
             f"({p['pretrain_seconds']:.0f} s).", "",
             "| used units | system | PNMI | PNMI, units shuffled | purity | note |",
             "| ---: | --- | ---: | ---: | ---: | --- |"]
    for r in p["rows"]:
        lines.append(f"| {r['used_units']} | {r['system']} | {r['pnmi']:.3f} | "
                     f"{r['pnmi_shuffled']:.3f} | {r['purity']:.3f} | {r['note']} |")
    phones = c["labels"] == "phn"
    lines += ["", f"CTC on frozen features ({'phones' if phones else 'letters'}): wav2vec 1.0 "
                  f"pretrained for {c['pretrain_updates']} updates; each CTC model "
                  f"{c['ctc_updates']} updates of {c['ctc_frames']} frames; lr chosen on valid "
                  "(greedy unit error rate).", ""]
    if phones:
        lines += ["| input | lr | valid PER % | test PER % | chosen |",
                  "| --- | ---: | ---: | ---: | --- |"]
    else:
        lines += ["| input | lr | valid UER % | test CER % | test WER % | chosen |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in c["rows"]:
        mark = "yes" if c["chosen"][r["system"]]["stage"] == r["stage"] else ""
        uer = "n/a" if r["valid_uer"] is None else f"{r['valid_uer']:.1f}"
        name = r["system"] + (" (degenerate)" if r["degenerate"] else "")
        if phones:   # phones are the "words" of a phone dictionary: WER is the PER
            lines.append(f"| {name} | {r['lr']:g} | {uer} | {100 * r['test_wer']:.1f} | {mark} |")
        else:
            lines.append(f"| {name} | {r['lr']:g} | {uer} | {100 * r['test_cer']:.1f} | "
                         f"{100 * r['test_wer']:.1f} | {mark} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--threads", type=int, default=THREADS, help="torch CPU threads (2)")
    p.add_argument("--vq-updates", type=int, default=600, help="vq-wav2vec pretraining updates")
    p.add_argument("--w2v-updates", type=int, default=1000, help="wav2vec 1.0 pretraining updates")
    p.add_argument("--ctc-updates", type=int, default=1000, help="updates of each CTC model")
    p.add_argument("--ctc-frames", type=int, default=1500, help="feature frames per CTC batch "
                                                                "(15 s of audio)")
    p.add_argument("--labels", choices=["phn", "ltr"], default="phn",
                   help="CTC targets: phones (error rate = PER) or letters (CER, WER)")
    p.add_argument("--lrs", default="5e-3,1e-2,2e-2", help="CTC learning-rate sweep")
    p.add_argument("--crop-seconds", type=float, default=5.0, help="pretraining crops")
    p.add_argument("--batch-seconds", type=float, default=15.0, help="audio per pretraining "
                                                                     "update")
    p.add_argument("--kmeans-seconds", type=float, default=600.0,
                   help="log-mel audio (from demo:unlabeled) the k-means baseline is fitted on")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", choices=["pnmi", "ctc"], default=None)
    args = p.parse_args()
    args.lrs = [float(x) for x in args.lrs.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    from w2v.data.loader import resolve_corpus

    corpus = Path(resolve_corpus("demo:train", "demo")).parent
    started = time.time()
    result = {"command": "python tests/benchmarks/evidence_vq_wav2vec.py " +
              " ".join(shlex.quote(a) for a in sys.argv[1:]), "threads": args.threads,
              "machine": f"{platform.machine()}, torch {torch.__version__}",
              "corpus": str(corpus)}
    if args.only in (None, "pnmi"):
        result["pnmi"] = measure_pnmi(args, corpus)
    if args.only in (None, "ctc"):
        result["ctc"] = measure_ctc(args)
    result["minutes"] = (time.time() - started) / 60
    (args.out / "evidence.json").write_text(json.dumps(result, indent=2) + "\n")
    if "pnmi" in result and "ctc" in result:
        text = markdown(result)
        (args.out / "evidence.md").write_text(text)
        print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
