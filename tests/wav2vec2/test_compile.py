"""trainer.compile: regional torch.compile gives the eager loss and gradients, with a bounded
number of graphs, also with dropout (whole graphs); the conv stack's fp32 CPU path stays
eager; a failing compiler falls back to eager with a warning."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from w2v.train.compiling import compile_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_w2v2 import assert_same_step, loss_and_grads, tiny_pretraining, waves  # noqa: E402

torch.set_num_threads(1)
pytestmark = pytest.mark.slow      # inductor compiles C++ on the CPU: tens of seconds


def test_compiled_blocks_give_eager_loss_and_gradients_with_bounded_graphs():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model, obj = tiny_pretraining(layers=3)       # no dropout: inductor draws its own masks
    model.train(), obj.train()
    batches = [waves(), waves(S=2100, seed=2), waves(B=2, S=1300, seed=3),
               waves(lengths=[1600, 1500, 1100], seed=4)]
    eager = [loss_and_grads(model, obj, b) for b in batches]
    warnings: list[str] = []
    regions = compile_model(model, warnings.append)
    assert regions.names == ["encoder (3 blocks)", "aggregator (3 blocks)"]
    names = list(model.state_dict())
    for batch, want in zip(batches, eager):
        assert_same_step(loss_and_grads(model, obj, batch), want, rtol=1e-4)
    assert warnings == [] and regions.failed is None
    assert list(model.state_dict()) == names                    # checkpoints unaffected
    # a graph per kind of block (first conv with its GroupNorm, other convs, Transformer
    # block) and variant (unpadded, padded): not one per length, batch size or block
    assert counters["stats"]["unique_graphs"] <= 2 * 3


def test_compiled_blocks_train_with_dropout_in_whole_graphs():
    # w2v's CPU dropout draws its mask with random_, which dynamo cannot trace, and reads it
    # as uint8, which inductor cannot lower: compiled, every recipe with dropout fell back to
    # eager mode, and the graph breaks recompiled on every call
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model, obj = tiny_pretraining(layers=2, dropout=0.1)
    model.train(), obj.train()
    eager = loss_and_grads(model, obj, waves())
    warnings: list[str] = []
    regions = compile_model(model, warnings.append)
    steps = [loss_and_grads(model, obj, waves(seed=s)) for s in (1, 2, 3)]
    assert warnings == [] and regions.failed is None
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] <= 2             # the Transformer block's
    for out, grads in steps:                                  # (the conv blocks run eagerly)
        assert out.loss.isfinite() and sorted(grads) == sorted(eager[1])
        assert all(g.isfinite().all() for g in grads.values())
    # the same batch, other masks: a loss near eager mode's
    assert abs(float(steps[0][0].loss.detach()) / float(eager[0].loss.detach()) - 1) < 0.2
    torch._dynamo.reset()


def test_compiled_dropout_drops_at_the_eager_rate_and_scales_what_it_keeps():
    from w2v.dropout import LEVELS, dropout

    torch._dynamo.reset()
    x = torch.rand(1 << 20) + 1.0
    y = torch.compile(lambda t: dropout(t, 0.1), dynamic=True)(x)
    dropped = y == 0
    # 1 << 20 draws: the rate's standard error is 3e-4
    assert abs(float(dropped.float().mean()) - round(0.1 * LEVELS) / LEVELS) < 1.5e-3
    torch.testing.assert_close(y[~dropped], x[~dropped] * LEVELS / (LEVELS - round(0.1 * LEVELS)))
    torch._dynamo.reset()


def test_a_failing_compiler_falls_back_to_eager_with_one_warning():
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    # the config module's own patch: monkeypatch's undo leaves cpp.cxx unreadable to later
    # compiles in the same process
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",)}):
        model, obj = tiny_pretraining(layers=2)
        model.train(), obj.train()
        want = loss_and_grads(model, obj, waves())
        warnings: list[str] = []
        regions = compile_model(model, warnings.append)
        assert_same_step(loss_and_grads(model, obj, waves()), want)
        assert_same_step(loss_and_grads(model, obj, waves()), want)
        assert len(warnings) == 1 and "trainer.compile" in warnings[0] and regions.failed
        assert all(m._compiled_call_impl is None for m in regions.modules)
    torch._dynamo.reset()


def _counting_compiled_calls(blocks) -> list:
    """Wraps each compiled block's compiled call to record that it ran; returns the record."""
    calls: list = []
    for block in blocks:
        def counted(*args, _compiled=block._compiled_call_impl, **kwargs):
            calls.append(1)
            return _compiled(*args, **kwargs)
        block._compiled_call_impl = counted
    return calls


def test_conv_blocks_run_compiled_in_bf16_but_fp32_on_cpu_keeps_the_eager_row_path():
    # on CPU in fp32 the conv stack runs row_conv, each block's GELU (and GroupNorm) handed
    # to the next block: compiled, BASE's stack took 1.7 x as long (docs/benchmarks.md)
    torch._dynamo.reset()
    model, obj = tiny_pretraining(layers=1)
    model.train(), obj.train()
    want = loss_and_grads(model, obj, waves())
    source = waves().source

    def bf16_features():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model.encoder(source).features.float()

    eager_bf16 = bf16_features()
    warnings: list[str] = []
    regions = compile_model(model, warnings.append, names=("encoder",))
    assert regions.names == ["encoder (3 blocks)"]
    calls = _counting_compiled_calls(model.encoder.conv_layers)
    assert_same_step(loss_and_grads(model, obj, waves()), want, rtol=0.0)   # the eager path
    assert calls == []
    compiled_bf16 = bf16_features()
    assert len(calls) == 3 and warnings == [] and regions.failed is None
    torch.testing.assert_close(compiled_bf16, eager_bf16, rtol=0.0, atol=2e-2)   # bf16 ulps
    compiled_bf16.sum().backward()
    assert all(p.grad.isfinite().all() for p in model.encoder.parameters())
