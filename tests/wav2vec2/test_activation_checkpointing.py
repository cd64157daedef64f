"""Activation checkpointing of context-network blocks and of the conv feature encoder: same
loss, gradients and running stats, fewer saved activations."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from w2v.interfaces import Signal
from w2v.plugins.wav2vec2.transformer import TransformerAggregator, TransformerAggregatorConfig
from w2v.train.runtime import enable_activation_checkpointing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_w2v2 import assert_same_step, loss_and_grads, tiny_pretraining, waves  # noqa: E402

torch.set_num_threads(1)


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("lengths", [None, [1600, 1400, 1100]])
def test_checkpointed_pretraining_step_equals_the_plain_one_with_dropout(lengths):
    model, obj = tiny_pretraining(layers=3, dropout=0.2)
    model.train(), obj.train()
    batch = waves(lengths=lengths)
    plain = loss_and_grads(model, obj, batch)
    assert enable_activation_checkpointing(model) == ["encoder", "aggregator"]
    assert model.aggregator.activation_checkpointing and model.encoder.activation_checkpointing
    checkpointed = loss_and_grads(model, obj, batch)
    assert_same_step(checkpointed, plain)          # same dropout masks in the recomputation


def conformer(**kw) -> TransformerAggregator:
    torch.manual_seed(0)
    cfg = TransformerAggregatorConfig(embed_dim=32, layers=2, ffn_dim=48, heads=4, conv_pos=8,
                                      conv_pos_groups=4, layer_type="conformer",
                                      conformer_kernel=5, dropout=0.1, **kw)
    return TransformerAggregator.from_config(
        cfg, Signal(kind="frames", dim=32, stride=320, receptive_field=400)).train()


@pytest.mark.parametrize("kw", [dict(), dict(pos_enc_type="rel_pos"),
                                dict(pos_enc_type="rope", fairseq_compat=True)])
def test_conformer_blocks_recompute_without_moving_batch_norm_twice(kw):
    results = []
    for enabled in (False, True):
        agg = conformer(**kw)
        agg.set_activation_checkpointing(enabled)
        x = torch.randn(2, 19, 32, generator=torch.Generator().manual_seed(1)).requires_grad_()
        torch.manual_seed(5)
        out = agg(x, torch.tensor([19, 13]))
        (out.output.square().sum() + out.layers[0].sum()).backward()
        stats = {n: b.clone() for n, b in agg.named_buffers()}
        grads = {n: p.grad.clone() for n, p in agg.named_parameters()}
        results.append((out.output.detach(), x.grad, grads, stats))
    (o0, x0, g0, s0), (o1, x1, g1, s1) = results
    torch.testing.assert_close(o1, o0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x1, x0, rtol=1e-5, atol=1e-6)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-5, atol=1e-6, msg=name)
    assert any("running_mean" in n for n in s0)
    for name in s0:                                 # BatchNorm moved once, not twice
        assert torch.equal(s1[name], s0[name]), name


def test_checkpointing_saves_only_block_inputs_and_is_off_in_eval():
    model, obj = tiny_pretraining(layers=4)
    model.train(), obj.train()
    batch = waves(B=2, S=3200)

    def step():
        torch.manual_seed(0)
        return obj(batch, model)

    plain = saved_bytes(step)
    model.aggregator.set_activation_checkpointing(True)
    less = saved_bytes(step)
    block = model.aggregator.layers[0]
    B, T, D = 2, int(model.encoder.output_lengths(torch.tensor(3200))), block.fc1.in_features
    per_block = B * T * (8 * D + 2 * block.fc1.out_features) * 4   # what a block keeps, at least
    assert plain - less >= 4 * per_block * 0.5, (plain, less)
    model.eval()
    with torch.no_grad():                           # inference: nothing to recompute
        model.aggregator(torch.randn(1, 9, D))



@pytest.mark.parametrize("lengths, padding", [(None, "include"), ([3200, 2500], "include"),
                                              ([3200, 2500], "exclude")])
def test_the_conv_encoder_recomputes_block_by_block_keeping_block_inputs(lengths, padding):
    from w2v.plugins.wav2vec2.feature_encoder import Wav2Vec2FeatureEncoder

    torch.manual_seed(0)
    config = Wav2Vec2FeatureEncoder.Config(conv_layers=[(32, 10, 5), (32, 3, 2), (32, 3, 2)],
                                           dropout=0.1, group_norm_padding=padding)
    encoder = Wav2Vec2FeatureEncoder(config).train()
    wave = torch.randn(2, 3200, generator=torch.Generator().manual_seed(2)).requires_grad_()
    lens = torch.tensor(lengths) if lengths else None
    results, saved = [], []
    for enabled in (False, True):
        encoder.set_activation_checkpointing(enabled)
        wave.grad = None
        encoder.zero_grad(set_to_none=True)

        def step():
            torch.manual_seed(7)                     # the same dropout masks in both runs
            return encoder(wave, lens)

        saved.append(saved_bytes(step))
        out = step()
        (out.features.square().sum() + out.penalty).backward()
        results.append((out.features.detach(), wave.grad.clone(),
                        {n: p.grad.clone() for n, p in encoder.named_parameters()}))
    (f0, w0, g0), (f1, w1, g1) = results
    torch.testing.assert_close(f1, f0, rtol=0, atol=0)
    torch.testing.assert_close(w1, w0, rtol=1e-5, atol=1e-7)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], rtol=1e-5, atol=1e-6, msg=name)
    first_block = 2 * 32 * 639 * 4                   # one [B, C, T0] fp32 tensor of block 0
    # block 0's window matrix and the three blocks' dropout masks (block 0's conv output,
    # which block 1's row_conv normalises and activates, is a block input: kept by both)
    assert saved[0] - saved[1] >= first_block / 2, saved
    block_inputs = 4 * 2 * (3200 + 32 * 639 + 32 * 319)  # the waveform, blocks 0 and 1 outputs
    assert saved[1] <= 1.5 * block_inputs, saved
