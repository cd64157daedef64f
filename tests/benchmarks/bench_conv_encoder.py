"""The wav2vec 2.0 conv feature encoder on CPU: its channels-last path against the plain layout.

BASE's conv stack (``Wav2Vec2FeatureEncoder`` with the default config), timed in one process
with the two layouts interleaved (the plain one forced by patching ``runs_channels_last``):

- training: forward + backward of ``B x S`` seconds, fp32 and under bf16 autocast;
- inference: the forward under ``inference_mode``, fp32.

    python tests/benchmarks/bench_conv_encoder.py               # 2 x 5 s train, 1 x 10 s infer
    python tests/benchmarks/bench_conv_encoder.py --fx-batch 8  # inference on 8 x 10 s
"""

from __future__ import annotations

import sys

from runs import median_seconds, pin_threads  # noqa: E402  (the scripts' folder is on sys.path)

THREADS = pin_threads(sys.argv[1:])  # before torch loads

import argparse  # noqa: E402
from typing import Callable  # noqa: E402
from unittest import mock  # noqa: E402

import torch  # noqa: E402

import w2v.plugins.wav2vec2.feature_encoder as fe  # noqa: E402


def in_layout(layout: str, fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` with the conv stack in ``layout`` (``plain``: the GPU layout, forced)."""
    def call() -> None:
        if layout == "cpu path":
            return fn()
        with mock.patch.object(fe, "runs_channels_last", lambda x: False):
            return fn()
    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--fx-batch", type=int, default=1)
    ap.add_argument("--fx-seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    encoder = fe.Wav2Vec2FeatureEncoder(fe.Wav2Vec2FeatureEncoderConfig(feature_grad_mult=0.1))
    wave = torch.randn(args.batch, int(args.seconds * 16000))
    fx_wave = torch.randn(args.fx_batch, int(args.fx_seconds * 16000))

    def train_step(bf16: bool) -> Callable[[], None]:
        def step() -> None:
            encoder.train()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = encoder(wave)
            (out.features.float().pow(2).mean() + out.penalty).backward()
            encoder.zero_grad(set_to_none=True)
        return step

    def inference() -> None:
        encoder.eval()
        with torch.inference_mode():
            encoder(fx_wave)

    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for what, fn in ((f"train fp32, {args.batch} x {args.seconds:g} s", train_step(False)),
                     (f"train bf16, {args.batch} x {args.seconds:g} s", train_step(True)),
                     (f"inference fp32, {args.fx_batch} x {args.fx_seconds:g} s", inference)):
        t = median_seconds({layout: in_layout(layout, fn) for layout in ("plain", "cpu path")},
                           args.repeats)
        print(f"{what:32s} plain {t['plain']:.3f} s   cpu path {t['cpu path']:.3f} s   "
              f"ratio {t['cpu path'] / t['plain']:.3f}", flush=True)


if __name__ == "__main__":
    main()
