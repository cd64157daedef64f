"""Trains the toy model in its own process (run by the trainer tests, also under torchrun).

Modes:
  train      train with checkpoints; prints ``update N`` after every update
  save-loop  write a ~16 MB checkpoint over and over; prints ``saved N`` after each
  ddp        (under torchrun) record the first update's gradients and the final
             parameters of this rank into ``--out``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from trainer_toys import (ToyDataset, ToyGanObjective, ToyModel, ToyObjective,  # noqa: E402
                          loader_factory)
from w2v.train import ScheduleConfig, Trainer, TrainerConfig  # noqa: E402
from w2v.train.checkpoint import CheckpointDirectory  # noqa: E402


def toy_config(max_updates: int, save_interval: int, **kw) -> TrainerConfig:
    base = dict(device="cpu", max_updates=max_updates, lr=5e-3, num_threads=1,
                save_interval=save_interval, log_interval=5, keep_last=2, weight_decay=0.01,
                schedule=ScheduleConfig(name="polynomial", warmup=0.2))
    base.update(kw)
    return TrainerConfig(**base)


def run_training(run_dir: str, max_updates: int, save_interval: int, workers: int = 0,
                 sleep: float = 0.0, echo: bool = False, **kw) -> Trainer:
    """Train the toy model; returns the trainer (its model holds the final weights)."""
    torch.manual_seed(1234)  # the initial weights
    model, objective = ToyModel(dropout=0.2), ToyObjective()
    factory = loader_factory(ToyDataset(48), batch_size=4, num_workers=workers)

    class Echo:
        def on_update_end(self, trainer, record):
            if echo:
                print(f"update {record.update}", flush=True)
            if sleep:
                time.sleep(sleep)

    trainer = Trainer(toy_config(max_updates, save_interval, **kw), model, objective, factory,
                      run_dir=run_dir, callbacks=[Echo()], tensorboard=False)
    summary = trainer.fit()
    if echo:
        print(f"resumed_from {summary.resumed_from}", flush=True)
        print(f"done {summary.updates}", flush=True)
    return trainer


def save_loop(directory: str) -> None:
    ckpt = CheckpointDirectory(Path(directory), keep_last=2)
    state = {"format": "w2v-trainer-checkpoint", "format_version": 1,
             "weights": torch.randn(4 * 1024 * 1024)}
    n = 0
    while True:
        n += 1
        state["n"] = n
        ckpt.save(state, n)
        print(f"saved {n}", flush=True)


def ddp(out: str, updates: int, update_freq: int) -> None:
    import torch.distributed as dist

    torch.manual_seed(1234 + int(__import__("os").environ.get("RANK", "0")))  # differs per rank
    model, objective = ToyModel(dropout=0.0), ToyObjective(injected=True)
    rank = int(__import__("os").environ["RANK"])
    world = int(__import__("os").environ["WORLD_SIZE"])
    factory = loader_factory(ToyDataset(48), batch_size=4, rank=rank, world_size=world)
    grads: dict[str, torch.Tensor] = {}

    class Capture:
        def on_before_optimizer_step(self, trainer, update, group):
            if update == 0:
                for n, p in trainer.model.named_parameters():
                    if p.grad is not None:
                        grads[n] = p.grad.detach().clone()

    cfg = toy_config(updates, 0, update_freq=update_freq, log_interval=1)
    trainer = Trainer(cfg, model, objective, factory, run_dir=out, callbacks=[Capture()],
                      tensorboard=False)
    trainer.fit()

    def params(t: Trainer) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in t.model.named_parameters()} | \
            {f"objective.{n}": p.detach().clone() for n, p in t.objective.named_parameters()}

    # the same process group again: LayerDrop + a temporary freeze (unused parameters) ...
    frozen = Trainer(toy_config(4, 0, freeze_updates={"encoder": 2}, freeze=["aggregator.out"]),
                     ToyModel(dropout=0.1, layerdrop=0.1), ToyObjective(), factory,
                     run_dir=Path(out) / "frozen", tensorboard=False)
    frozen.fit()
    # ... and composite (GAN-style) training with one optimizer per group
    gan = Trainer(toy_config(4, 0), ToyModel(), ToyGanObjective(), factory,
                  run_dir=Path(out) / "gan", tensorboard=False)
    gan.fit()
    torch.save({"grads": grads, "params": params(trainer), "frozen": params(frozen),
                "gan": params(gan), "gan_groups": gan.objective.groups_seen,
                "world": dist.get_world_size()}, Path(out) / f"rank{rank}.pt")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "save-loop", "ddp"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--max-updates", type=int, default=30)
    ap.add_argument("--save-interval", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--update-freq", type=int, default=1)
    args = ap.parse_args()
    if args.mode == "train":
        trainer = run_training(args.dir, args.max_updates, args.save_interval, args.workers,
                               args.sleep, echo=True)
        torch.save(trainer.model.state_dict(), Path(args.dir) / "final_model.pt")
    elif args.mode == "save-loop":
        save_loop(args.dir)
    else:
        ddp(args.dir, args.max_updates, args.update_freq)


if __name__ == "__main__":
    main()
