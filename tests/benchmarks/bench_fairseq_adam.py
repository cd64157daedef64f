"""Time one optimizer step of `optimizer: adam` (FairseqAdam) against torch's AdamW on CPU.

The parameter set is wav2vec 2.0 BASE's own (built from recipes/wav2vec2_base.yaml, 95 M
parameters); every step gets fresh random gradients. Reports the median step time of each
optimizer, interleaved so machine load hits both alike:

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_fairseq_adam.py --steps 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from w2v.build import ModelConfig, build_model
from w2v.config.recipe import load_recipe
from w2v.config.structure import structure
from w2v.train.adam import FairseqAdam

ROOT = Path(__file__).resolve().parents[2]


def base_parameters() -> list[torch.nn.Parameter]:
    raw = load_recipe(ROOT / "recipes" / "wav2vec2_base.yaml")
    model = structure(raw.data["model"], ModelConfig, srcmap=raw.srcmap, path=("model",))
    return [p for p in build_model(model).parameters() if p.requires_grad]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    params = base_parameters()
    print(f"{len(params)} tensors, {sum(p.numel() for p in params) / 1e6:.1f} M parameters, "
          f"{args.threads} thread(s)")
    settings = dict(lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    optimizers = {"FairseqAdam": FairseqAdam(params, **settings),
                  "torch AdamW (default)": torch.optim.AdamW(params, **settings),
                  "torch AdamW (foreach)": torch.optim.AdamW(params, foreach=True, **settings),
                  "torch AdamW (fused)": torch.optim.AdamW(params, fused=True, **settings)}
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for step in range(args.steps + 1):                 # step 0 creates the state: not timed
        for name, opt in optimizers.items():
            for p in params:
                p.grad = torch.randn_like(p)
            start = time.perf_counter()
            opt.step()
            if step:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["torch AdamW (default)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<24} median {med * 1e3:8.1f} ms/step   {med / base:5.2f}x torch AdamW")


if __name__ == "__main__":
    main()
