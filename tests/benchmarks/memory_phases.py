"""Where a training step's memory goes: RSS after each phase of three BASE updates, one side.

    python tests/benchmarks/memory_phases.py hf          # Hugging Face Wav2Vec2ForPreTraining
    python tests/benchmarks/memory_phases.py w2v         # w2v, the same architecture
    python tests/benchmarks/memory_phases.py w2v-ckpt    # w2v + trainer.activation_checkpointing

Run each side in its own process. Every figure is MB over the RSS of the built model: the
RSS after the forward, the backward, the AdamW step and ``zero_grad``, with the peak
(``VmHWM``, reset at the start of each update) beside each. The first update shows the
activations alone (no gradients or optimizer state exist yet); the later ones the steady
state. The batch is bench_wav2vec2.py's (2 x 5 s, the same masks and negatives).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_wav2vec2 as bench  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("side", choices=("hf", "w2v", "w2v-ckpt"))
    ap.add_argument("--updates", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setup = argparse.Namespace(threads=args.threads, batch=2, seconds=5.0, small=False, seed=0,
                               hf_attn="eager", no_dropout=False)
    if args.side == "hf":
        sides = bench.build_sides(setup, "hf")
        inputs = bench.make_inputs(setup, sides.cfg, 2, 5.0, 0)
        model = sides.hf.train()
        opt = bench.adamw(model)

        def forward() -> torch.Tensor:
            return model(inputs.wave, mask_time_indices=inputs.mask,
                         sampled_negative_indices=inputs.hf_neg).loss
    else:
        sides = bench.build_w2v_alone(setup)
        inputs = bench.make_inputs(setup, sides.cfg, 2, 5.0, 0)
        model, objective = sides.w2v.train(), sides.objective.train()
        for part in (model.encoder, model.aggregator):
            part.set_activation_checkpointing(args.side == "w2v-ckpt")
        opt = bench.adamw(model, objective)
        batch = inputs.batch()

        def forward() -> torch.Tensor:
            return objective(batch, model).loss

    base = bench.rss_mb()
    print(f"{args.side}: built model {base:.0f} MB; MB over it (peak in brackets):")
    for update in range(args.updates):
        bench.reset_peak_rss()
        marks = []
        loss = forward()
        marks.append(("forward", bench.rss_mb(), bench.vm_hwm_mb()))
        loss.backward()
        marks.append(("backward", bench.rss_mb(), bench.vm_hwm_mb()))
        opt.step()
        marks.append(("step", bench.rss_mb(), bench.vm_hwm_mb()))
        opt.zero_grad(set_to_none=True)
        marks.append(("zero_grad", bench.rss_mb(), bench.vm_hwm_mb()))
        print(f"  update {update}: " + " | ".join(f"{name} {now - base:.0f} ({peak - base:.0f})"
                                                  for name, now, peak in marks), flush=True)


if __name__ == "__main__":
    main()
