"""wav2vec 2.0's positional conv on CPU: oneDNN's grouped ``F.conv1d`` against ``fft_conv``.

BASE's shape (D = 768, K = 128, 16 groups; others by option), fp32, at several batch shapes, the two
interleaved in one process: inference (``inference_mode``) and forward + backward. Each line
says which one :func:`w2v.plugins.wav2vec2.fft_conv.pays_off` picks for that shape, so the
threshold can be checked against the timings on any machine.

    python tests/benchmarks/bench_positional_conv.py
    python tests/benchmarks/bench_positional_conv.py --shapes 2x249 8x499 --repeats 9
    python tests/benchmarks/bench_positional_conv.py --dim 192 --kernel 32 --groups 8   # the demo
"""

from __future__ import annotations

import sys

from runs import median_seconds, pin_threads  # noqa: E402  (the scripts' folder is on sys.path)

THREADS = pin_threads(sys.argv[1:])  # before torch loads

import argparse  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from w2v.plugins.wav2vec2.fft_conv import fft_conv, fft_length, pays_off  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", nargs="+", default=["1x249", "2x249", "1x499", "2x499", "8x499"],
                    help="BxT: utterances x frames (49.9 frames per second of audio)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--dim", type=int, default=768, help="channels (BASE: 768)")
    ap.add_argument("--kernel", type=int, default=128, help="taps (BASE: 128)")
    ap.add_argument("--groups", type=int, default=16, help="groups (BASE: 16)")
    args = ap.parse_args()
    DIM, KERNEL, GROUPS = args.dim, args.kernel, args.groups
    torch.manual_seed(0)
    weight = torch.randn(DIM, DIM // GROUPS, KERNEL) * 0.01
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}; times in ms, "
          f"fft / conv ratios")
    for shape in args.shapes:
        B, T = (int(v) for v in shape.split("x"))
        x = torch.randn(B, DIM, T + KERNEL - 1)
        grad = torch.randn(B, DIM, T)
        conv = lambda a, w: F.conv1d(a, w, groups=GROUPS)          # noqa: E731
        fft = lambda a, w: fft_conv(a, w, GROUPS)                   # noqa: E731
        err = float((fft(x, weight) - conv(x, weight)).norm() / conv(x, weight).norm())

        def infer(fn) -> Callable[[], None]:
            def call() -> None:
                with torch.inference_mode():
                    fn(x, weight)
            return call

        def train(fn) -> Callable[[], None]:
            xg, wg = x.clone().requires_grad_(), weight.clone().requires_grad_()

            def call() -> None:
                fn(xg, wg).backward(grad)
                xg.grad = wg.grad = None
            return call

        ti = median_seconds({"conv": infer(conv), "fft": infer(fft)}, args.repeats)
        tt = median_seconds({"conv": train(conv), "fft": train(fft)}, args.repeats)
        picks = "fft" if pays_off(x, KERNEL) else "conv"
        print(f"{shape:>6s}  N={fft_length(x.shape[-1]):4d}  inference conv {ti['conv'] * 1e3:6.1f} "
              f"fft {ti['fft'] * 1e3:6.1f} ({ti['fft'] / ti['conv']:.2f})   fwd+bwd conv "
              f"{tt['conv'] * 1e3:6.1f} fft {tt['fft'] * 1e3:6.1f} ({tt['fft'] / tt['conv']:.2f})"
              f"   pays_off: {picks}   rel. error {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
