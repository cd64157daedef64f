"""Data-loading throughput (audio seconds per wall-clock second) by DataLoader workers.

Writes ``--num-files`` synthetic utterances to a temporary folder (or reads
``--manifest``), builds the pretraining loader (``w2v.data.build_loader``) and
times one full pass for each worker count, printing a small table. A script,
not a test::

    python tests/benchmarks/bench_data_loading.py --num-files 200 --workers 0,2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from w2v.data.config import DataConfig  # noqa: E402
from w2v.data.sources import build_loader  # noqa: E402
from w2v.data.manifest import write_manifests  # noqa: E402


def synthesize(folder: str, num_files: int, seconds: float, ext: str, sample_rate: int,
               seed: int = 0) -> str:
    """Write ``num_files`` noisy tones of 0.5-1.5 x ``seconds``; returns the train manifest."""
    rng = np.random.default_rng(seed)
    audio = os.path.join(folder, "audio")
    os.makedirs(audio)
    for i in range(num_files):
        n = int(sample_rate * seconds * rng.uniform(0.5, 1.5))
        t = np.arange(n) / sample_rate
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.standard_normal(n)
        sf.write(os.path.join(audio, f"utt{i:05d}.{ext}"), wave.astype(np.float32), sample_rate)
    return write_manifests(audio, folder, exts=[ext], valid_percent=0.0)["train"]


def one_pass(cfg: DataConfig, sample_rate: int) -> dict[str, float]:
    """Time one epoch; audio 'read' is decoded audio, 'batched' what the batches hold."""
    start = time.perf_counter()
    loader, sampler = build_loader(cfg, "train", train=True)
    sizes = loader.dataset.sizes
    read = batched = 0
    batches = 0
    first = None
    for batch in loader:
        if first is None:
            first = time.perf_counter() - start
        batches += 1
        batched += batch.source.numel()
        read += int(sizes[np.searchsorted(loader.dataset.rows, batch.ids.numpy())].sum())
    wall = time.perf_counter() - start
    del loader
    return {"wall_s": wall, "first_batch_s": first or 0.0, "batches": batches,
            "read_audio_s": read / sample_rate, "batched_audio_s": batched / sample_rate}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", help="existing manifest to read instead of synthetic audio")
    p.add_argument("--num-files", type=int, default=200, help="synthetic files (default 200)")
    p.add_argument("--seconds", type=float, default=4.0, help="mean synthetic length (s)")
    p.add_argument("--ext", default="flac", choices=["flac", "wav", "ogg"])
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    p.add_argument("--max-tokens", type=int, default=1_400_000)
    p.add_argument("--max-sample-size", type=int, default=250_000)
    p.add_argument("--repeats", type=int, default=1, help="passes per worker count (best kept)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest
        if manifest is None:
            t0 = time.perf_counter()
            manifest = synthesize(tmp, args.num_files, args.seconds, args.ext, args.sample_rate)
            print(f"wrote {args.num_files} {args.ext} files in {time.perf_counter() - t0:.1f} s")
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, manifest {manifest}")
        print(f"{'workers':>7} {'batches':>7} {'audio s':>8} {'wall s':>7} {'1st batch s':>11} "
              f"{'read audio-s/s':>14} {'batched audio-s/s':>17}")
        for workers in [int(w) for w in args.workers.split(",")]:
            cfg = DataConfig(train=manifest, sample_rate=args.sample_rate,
                             max_tokens=args.max_tokens, max_sample_size=args.max_sample_size,
                             num_workers=workers)
            r = min((one_pass(cfg, args.sample_rate) for _ in range(args.repeats)),
                    key=lambda r: r["wall_s"])
            print(f"{workers:>7} {r['batches']:>7} {r['read_audio_s']:>8.0f} {r['wall_s']:>7.2f} "
                  f"{r['first_batch_s']:>11.2f} {r['read_audio_s'] / r['wall_s']:>14.0f} "
                  f"{r['batched_audio_s'] / r['wall_s']:>17.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
