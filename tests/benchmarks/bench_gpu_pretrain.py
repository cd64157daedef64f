"""wav2vec 2.0 BASE pretraining throughput and MFU on one GPU.

Builds the model and objective of ``recipes/wav2vec2_base.yaml`` and times full training
updates (forward, backward, clipping, fused AdamW) on one GPU batch of fairseq's size
(``--batch`` clips of ``--seconds`` s: 5 x 15.6 s = 1.25 M samples, fairseq's per-GPU
``max_tokens`` is 1.4 M), LayerDrop and dropout as in the recipe, after warm-up. Model FLOPs
per update come from ``torch.utils.flop_counter`` (matmuls, convolutions, attention);
MFU divides the achieved rate by the chip's dense bf16 peak (``--peak-tflops``).

    python tests/benchmarks/bench_gpu_pretrain.py                       # bf16
    python tests/benchmarks/bench_gpu_pretrain.py --precision fp32 --updates 10
    python tests/benchmarks/bench_gpu_pretrain.py --side hf             # Hugging Face, same work
    python tests/benchmarks/bench_gpu_pretrain.py --compile             # trainer.compile's regions
    python tests/benchmarks/bench_gpu_pretrain.py --device cpu --batch 1 --seconds 1   # smoke run

``--side hf`` times Hugging Face ``Wav2Vec2ForPreTraining`` with the same architecture,
dropouts, LayerDrop, batch, optimizer and clipping (SDPA attention); its span mask and
negatives are drawn once before timing (HF draws them in the data collator, on the CPU).

``--device cpu`` runs the same code on the CPU (w2v's CPU-only paths kept out of the FLOP
count, as on a GPU), so that CI can check the script before a rare GPU session depends on
it; its timings and MFU mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from unittest import mock

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


def build_hf(device: torch.device):
    """Hugging Face ``Wav2Vec2ForPreTraining`` with the BASE recipe's architecture and dropouts."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    cfg = Wav2Vec2Config(
        conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False,
        num_codevector_groups=2, num_codevectors_per_group=320, num_negatives=100,
        codevector_dim=256, proj_codevector_dim=256, contrastive_logits_temperature=0.1,
        diversity_loss_weight=0.1, mask_time_prob=0.65, mask_time_length=10, mask_time_min_masks=2,
        hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, feat_proj_dropout=0.1,
        feat_quantizer_dropout=0.1, final_dropout=0.0, layerdrop=0.05,
        attn_implementation="sdpa")
    return Wav2Vec2ForPreTraining(cfg).to(device)


def hf_mask_and_negatives(model, batch: int, samples: int, device: torch.device) -> dict:
    """HF's own span mask and negative indices for one batch (as its data collator draws)."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import (_compute_mask_indices,
                                                                _sample_negative_indices)

    cfg = model.config
    T = int(model._get_feat_extract_output_lengths(torch.tensor(samples)))
    mask = _compute_mask_indices((batch, T), cfg.mask_time_prob, cfg.mask_time_length,
                                 min_masks=cfg.mask_time_min_masks)
    neg = _sample_negative_indices((batch, T), cfg.num_negatives, mask)
    return {"mask_time_indices": torch.from_numpy(mask).to(device),
            "sampled_negative_indices": torch.from_numpy(neg).long().to(device)}


def gpu_paths(device: torch.device):
    """On CPU, w2v's CPU-only paths switched off (``row_conv``'s in-place products and the
    FFT positional conv, which the FLOP counter does not see): the model runs what it runs on
    a GPU. Nothing to switch on a GPU."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    import w2v.plugins.wav2vec2.feature_encoder as fe
    import w2v.plugins.wav2vec2.positional as positional

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(fe, "runs_channels_last", lambda x: False))
    stack.enter_context(mock.patch.object(positional, "pays_off", lambda x, kernel: False))
    return stack


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device: torch.device, fn):
    """``(seconds, fn())``: CUDA events on a GPU, the wall clock elsewhere."""
    if device.type != "cuda":
        start = time.perf_counter()
        value = fn()
        return time.perf_counter() - start, value
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    value = fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0, value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="recipes/wav2vec2_base.yaml")
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=15.6)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--side", choices=["w2v", "hf"], default="w2v")
    ap.add_argument("--compile", action="store_true", help="w2v: trainer.compile's regional "
                    "torch.compile (compile time reported apart)")
    ap.add_argument("--checkpointing", action="store_true",
                    help="w2v: activation checkpointing of the context-network blocks")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="dense bf16 peak of the chip (H100/H200 SXM: 989)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: a smoke run of this script (its timings and MFU mean nothing)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures GPU throughput")
        return 0
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    samples = int(args.seconds * 16000)
    if args.side == "hf":
        model, objective = build_hf(device), None
    else:
        model, objective = build(args.recipe, device)
        objective.train()
        if args.checkpointing:
            model.aggregator.set_activation_checkpointing(True)
    model.train()
    params = [p for m in (model, objective) if m is not None for p in m.parameters()
              if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01,
                            fused=True)
    gen = torch.Generator(device=device).manual_seed(0)
    wave = 0.1 * torch.randn(args.batch, samples, device=device, generator=gen)
    batch = Batch(source=wave, lengths=None)
    bf16 = args.precision == "bf16"

    hf_inputs = hf_mask_and_negatives(model, args.batch, samples, device) \
        if args.side == "hf" else None

    def update(step: int) -> float:
        if hf_inputs is not None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(wave, **hf_inputs)
            (out.loss / hf_inputs["mask_time_indices"].sum()).backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return out.contrastive_loss.detach() / hf_inputs["mask_time_indices"].sum()
        model.set_num_updates(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = objective(batch, model, step)
        (out.loss / max(out.sample_size, 1)).backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.stats["contrastive"]

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, gpu_paths(device):                    # counted eagerly, before compiling
        update(0)
    flops = counter.get_total_flops()
    regions = None
    if args.compile and args.side == "w2v":
        from w2v.train.compiling import compile_model
        regions = compile_model(model, print)
        print("compiled:", regions.names, flush=True)
    first = time.perf_counter()
    update(0)                      # with --compile: the compilation
    synchronize(device)
    first = time.perf_counter() - first
    losses = [float(update(i)) for i in range(1, args.warmup + 1)]
    synchronize(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.updates):
        seconds, loss = timed(device, lambda: float(update(args.warmup + 1 + i)))
        times.append(seconds)
        losses.append(loss)
    step = statistics.median(times)
    audio = args.batch * args.seconds
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (smoke run)",
        "torch": torch.__version__,
        "side": args.side, "checkpointing": args.checkpointing,
        # False where compilation fell back to eager mode (the error is kept): eager timings
        "compile": regions is not None and regions.failed is None,
        "compile_error": regions.failed if regions is not None else None,
        "first_update_s": first, "compile_s_estimate": first - step,
        "precision": args.precision, "batch": f"{args.batch} x {args.seconds} s",
        "parameters": sum(p.numel() for p in model.parameters()),
        "step_ms_median": 1000 * step, "step_ms_min": 1000 * min(times),
        "step_ms_max": 1000 * max(times), "audio_seconds_per_second": audio / step,
        "model_tflop_per_update": flops / 1e12, "achieved_tflops": flops / step / 1e12,
        "mfu": flops / step / (args.peak_tflops * 1e12),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "contrastive_first_last": [losses[0], losses[-1]],
        "all_finite": all(map(lambda x: x == x and abs(x) != float("inf"), losses)),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
