"""w2v.dropout against F.dropout on CPU: forward + backward at wav2vec 2.0 BASE's shapes.

The attention weights ``[2, 12, 249, 249]`` and a block's output ``[2, 249, 768]`` (2 x 5 s),
fp32 and bf16, the two implementations interleaved; medians of ``--repeats`` rounds.

    python tests/benchmarks/bench_dropout.py
"""

from __future__ import annotations

import sys

from runs import median_seconds, pin_threads  # noqa: E402  (the scripts' folder is on sys.path)

THREADS = pin_threads(sys.argv[1:])  # before torch loads

import argparse  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from w2v.dropout import dropout  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, p = {args.p}")
    for shape in ((2, 12, 249, 249), (2, 249, 768)):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(shape, dtype=dtype)
            grad = torch.randn_like(x)

            def run(fn):
                def call() -> None:
                    xs = x.detach().requires_grad_()
                    fn(xs, args.p).backward(grad)
                return call

            t = median_seconds({"F.dropout": run(lambda v, p: F.dropout(v, p, True)),
                                "w2v.dropout": run(dropout)}, args.repeats)
            print(f"{str(list(shape)):18s} {str(dtype)[6:]:9s} F.dropout "
                  f"{t['F.dropout'] * 1e3:6.2f} ms   w2v.dropout {t['w2v.dropout'] * 1e3:6.2f} ms",
                  flush=True)


if __name__ == "__main__":
    main()
