"""Two-process DDP on gloo (torchrun) against a single process that accumulates the same
micro-batches: same first-update gradients, identical parameters across ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from trainer_script import toy_config  # noqa: E402
from trainer_toys import ToyDataset, ToyModel, ToyObjective, loader_factory  # noqa: E402
from w2v.train import Trainer  # noqa: E402


def _single_process_grads(tmp_path: Path, update_freq: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(1234)  # rank 0's initial weights, which DDP broadcasts
    model, objective = ToyModel(dropout=0.0), ToyObjective(injected=True)
    grads: dict[str, torch.Tensor] = {}

    class Capture:
        def on_before_optimizer_step(self, trainer, update, group):
            if update == 0:
                grads.update({n: p.grad.detach().clone()
                              for n, p in trainer.model.named_parameters()})

    Trainer(toy_config(1, 0, update_freq=update_freq), model, objective,
            loader_factory(ToyDataset(48), batch_size=4), run_dir=tmp_path / f"single{update_freq}",
            callbacks=[Capture()], tensorboard=False).fit()
    return grads


def test_two_rank_ddp_matches_single_process_accumulation(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(HERE / "trainer_script.py"), "ddp", "--dir", str(out), "--max-updates", "4",
         "--update-freq", "1"], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert r0["world"] == r1["world"] == 2
    # after 4 updates every parameter is bit-identical across ranks, also with LayerDrop and
    # frozen components (find_unused_parameters) and in composite training
    for run in ("params", "frozen", "gan"):
        for name, p in r0[run].items():
            assert torch.equal(p, r1[run][name]), (run, name)
    assert r0["gan_groups"] == ["generator", "discriminator"] * 2
    # the first update's gradients: sum over both ranks' micro-batches / global sample size
    single = _single_process_grads(tmp_path, update_freq=2)
    own_only = _single_process_grads(tmp_path, update_freq=1)
    assert set(r0["grads"]) == set(single)
    for name, g in single.items():
        torch.testing.assert_close(r0["grads"][name], g, rtol=1e-5, atol=1e-7)
        assert torch.equal(r0["grads"][name], r1["grads"][name]), name
    assert any(not torch.allclose(own_only[n], single[n], rtol=1e-3) for n in single)
    # rank 0 alone wrote the metrics and checkpoints
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4
    assert (out / "checkpoints" / "last.pt").is_file()
