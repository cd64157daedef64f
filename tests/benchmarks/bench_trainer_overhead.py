"""The trainer loop's own cost per update, on a tiny model (CPU, one thread).

Runs the same updates twice: through :class:`w2v.train.Trainer`, and through a
bare loop doing only what any loop must (fetch the batch, forward, backward,
optimizer step, zero the gradients). The difference per update is the loop's
overhead: reseeding, update counts, lr schedule, gradient normalisation and
norm, the one device sync for stats, health checks, meters and logging.
A/B runs are interleaved; the median of the repeats is reported.

    python tests/benchmarks/bench_trainer_overhead.py [--updates 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import torch  # noqa: E402

from trainer_toys import ToyDataset, ToyModel, ToyObjective, loader_factory  # noqa: E402
from w2v.train import ScheduleConfig, Trainer, TrainerConfig  # noqa: E402


def bare_loop(updates: int) -> float:
    """Seconds per update of the minimal loop."""
    torch.manual_seed(0)
    model, objective = ToyModel(), ToyObjective()
    params = list(model.parameters()) + list(objective.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    factory = loader_factory(ToyDataset(256), batch_size=4)
    loader, _ = factory(0, None)
    it = iter(loader)
    start = time.perf_counter()
    for u in range(updates):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(factory(u, None)[0])
            batch = next(it)
        out = objective(batch, model, u)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / updates


def trainer_loop(updates: int, run_dir: str) -> float:
    """Seconds per update through the trainer (fit setup excluded)."""
    torch.manual_seed(0)
    cfg = TrainerConfig(device="cpu", max_updates=updates, lr=1e-3, num_threads=1,
                        log_interval=100, save_interval=0, schedule=ScheduleConfig(warmup=0.1))
    times: list[float] = []

    class Clock:
        def on_fit_start(self, trainer):
            times.append(time.perf_counter())

        def on_update_end(self, trainer, record):
            if trainer.num_updates == updates:
                times.append(time.perf_counter())

    trainer = Trainer(cfg, ToyModel(), ToyObjective(),
                      loader_factory(ToyDataset(256), batch_size=4), run_dir=run_dir,
                      callbacks=[Clock()], tensorboard=False)
    trainer.fit()
    return (times[1] - times[0]) / updates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    bare_loop(20), trainer_loop(20, tempfile.mkdtemp())  # warm up
    bare, full = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(args.updates))
        with tempfile.TemporaryDirectory() as d:
            full.append(trainer_loop(args.updates, d))
    b, f = statistics.median(bare), statistics.median(full)
    print(f"torch {torch.__version__}, 1 thread, {args.updates} updates x {args.repeats} repeats")
    print(f"bare loop     {b * 1e3:8.3f} ms/update")
    print(f"trainer loop  {f * 1e3:8.3f} ms/update")
    print(f"overhead      {(f - b) * 1e3:8.3f} ms/update "
          f"({(f - b) / b * 100:.0f} % of a tiny step)")


if __name__ == "__main__":
    main()
