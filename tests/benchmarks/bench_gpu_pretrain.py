"""wav2vec 2.0 BASE pretraining throughput and MFU on one GPU.

Builds the model and objective of ``recipes/wav2vec2_base.yaml`` and times full training
updates (forward, backward, clipping, fused AdamW) on one GPU batch of fairseq's size
(``--batch`` clips of ``--seconds`` s: 5 x 15.6 s = 1.25 M samples, fairseq's per-GPU
``max_tokens`` is 1.4 M), LayerDrop and dropout as in the recipe, after warm-up. Model FLOPs
per update come from ``torch.utils.flop_counter`` (matmuls, convolutions, attention);
MFU divides the achieved rate by the chip's dense bf16 peak (``--peak-tflops``).

    python tests/benchmarks/bench_gpu_pretrain.py                       # bf16
    python tests/benchmarks/bench_gpu_pretrain.py --precision fp32 --updates 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from w2v.build import build_model, build_objective
from w2v.config.recipe import load_recipe
from w2v.interfaces import Batch
from w2v.stages import plan_stages


def build(recipe: str, device: torch.device):
    sec = plan_stages(load_recipe(recipe))["pretrain"].sections
    model = build_model(sec.model, sec.data.sample_rate).to(device)
    objective = build_objective(sec.objective, model).to(device)
    return model, objective


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="recipes/wav2vec2_base.yaml")
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=15.6)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="dense bf16 peak of the chip (H100/H200 SXM: 989)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures GPU throughput")
        return 0
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model, objective = build(args.recipe, device)
    model.train(), objective.train()
    params = [p for m in (model, objective) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01,
                            fused=True)
    samples = int(args.seconds * 16000)
    gen = torch.Generator(device=device).manual_seed(0)
    wave = 0.1 * torch.randn(args.batch, samples, device=device, generator=gen)
    batch = Batch(source=wave, lengths=None)
    bf16 = args.precision == "bf16"

    def update(step: int) -> float:
        model.set_num_updates(step)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = objective(batch, model, step)
        (out.loss / max(out.sample_size, 1)).backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.stats["contrastive"]

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        update(0)
    flops = counter.get_total_flops()
    losses = [float(update(i)) for i in range(1, args.warmup + 1)]
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.updates):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        losses.append(float(update(args.warmup + 1 + i)))
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    step = statistics.median(times)
    audio = args.batch * args.seconds
    result = {
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
        "precision": args.precision, "batch": f"{args.batch} x {args.seconds} s",
        "parameters": sum(p.numel() for p in model.parameters()),
        "step_ms_median": 1000 * step, "step_ms_min": 1000 * min(times),
        "step_ms_max": 1000 * max(times), "audio_seconds_per_second": audio / step,
        "model_tflop_per_update": flops / 1e12, "achieved_tflops": flops / step / 1e12,
        "mfu": flops / step / (args.peak_tflops * 1e12),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "contrastive_first_last": [losses[0], losses[-1]],
        "all_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
