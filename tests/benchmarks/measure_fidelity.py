"""Measure what each fairseq-fidelity switch changes on a small wav2vec 2.0 model (CPU, ~1 min).

The numbers in docs/fidelity.md come from this script:

    OMP_NUM_THREADS=1 python tests/benchmarks/measure_fidelity.py

The model: wav2vec 2.0's conv encoder (BASE layout, 512 wide, group_norm, as BASE), a Gumbel
quantizer (2 x 64), a 2-block post-LN Transformer (256 wide), masked_contrastive with BASE's
loss weights; a padded batch of 16000/16000/12000 samples of seeded noise. Each comparison
runs both sides from the same initial weights with the same random draws.
"""

from __future__ import annotations

import copy
import math
import statistics

import torch

from w2v.build import ModelConfig, build_model, build_objective
from w2v.config.structure import structure, structure_component
from w2v.interfaces import Batch
from w2v.plugins.wav2vec.gru import GRUAggregator
from w2v.plugins.wav2vec.negatives import fairseq_negatives
from w2v.plugins.wav2vec2.negatives import fairseq_negative_indices, sample_negative_indices
from w2v.train.adam import FairseqAdam
from w2v.train.config import resolve_length

MODEL = {"encoder": {"name": "wav2vec2_conv", "mode": "group_norm"},
         "quantizer": {"name": "gumbel", "groups": 2, "num_vars": 64, "dim": 128},
         "aggregator": {"name": "transformer", "embed_dim": 256, "layers": 2, "ffn_dim": 512,
                        "heads": 4, "conv_pos": 32, "conv_pos_groups": 8, "dropout": 0.0,
                        "attention_dropout": 0.0},
         "masker": {"name": "span", "mask_prob": 0.65, "mask_length": 10}}


def small(encoder_compat: bool = False, objective_compat: bool = False, **objective):
    torch.manual_seed(0)
    section = copy.deepcopy(MODEL)
    section["encoder"]["fairseq_compat"] = encoder_compat
    model = build_model(structure(section, ModelConfig, path=("model",)))
    spec = structure_component("objective", {"name": "masked_contrastive", "num_negatives": 20,
                                             "fairseq_compat": objective_compat, **objective},
                               path="objective")
    return model.train(), build_objective(spec, model).train()


def batch() -> Batch:
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([16000, 16000, 12000])
    wave = torch.randn(3, 16000, generator=g) * 0.1
    wave[2, 12000:] = 0.0
    return Batch(source=wave, lengths=lengths)


def step(model, objective, b, seed):
    torch.manual_seed(seed)                      # same masks / Gumbel noise / negatives
    out = objective(b, model, seed)
    return out.loss / max(float(out.sample_size), 1.0), out


def train(model, objective, opt, lrs, b):
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    for i, lr in enumerate(lrs):
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        loss, _ = step(model, objective, b, i)
        loss.backward()
        opt.step()
    return start, {n: p.detach().clone() for n, p in model.named_parameters()}


def trajectory_gap(run_a, run_b) -> tuple[float, float]:
    """Per tensor |delta_a - delta_b| / |delta_a| (median, max), over tensors that moved."""
    (start, end_a), (_, end_b) = run_a, run_b
    ratios = []
    for name in start:
        da, db = end_a[name] - start[name], end_b[name] - start[name]
        if da.norm() > 0:
            ratios.append(float((da - db).norm() / da.norm()))
    return statistics.median(ratios), max(ratios)


def params(model, objective):
    return list(model.parameters()) + list(objective.parameters())


def main() -> None:
    torch.set_num_threads(1)
    b = batch()
    settings = dict(betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)

    # 1. adam: fairseq's rule against torch AdamW, 5 updates at lr 5e-4
    m, o = small()
    fs = train(m, o, FairseqAdam(params(m, o), lr=5e-4, **settings), [5e-4] * 5, b)
    m, o = small()
    th = train(m, o, torch.optim.AdamW(params(m, o), lr=5e-4, **settings), [5e-4] * 5, b)
    med, worst = trajectory_gap(fs, th)
    print(f"1 adam vs torch AdamW, 5 updates: parameter change differs by {med:.1%} "
          f"(median tensor), {worst:.1%} (worst tensor)")

    # 2. polynomial warmup: update 0 at lr 0 (fairseq) or lr/warmup, 10 updates, warmup 32
    peak, warmup = 5e-4, 32
    m, o = small()
    new = train(m, o, FairseqAdam(params(m, o), lr=0.0, **settings),
                [peak * n / warmup for n in range(10)], b)
    m, o = small()
    old = train(m, o, FairseqAdam(params(m, o), lr=0.0, **settings),
                [peak * max(n, 1) / warmup for n in range(10)], b)
    med, worst = trajectory_gap(new, old)
    print(f"2 polynomial warmup from lr 0, 10 updates: parameter change differs by {med:.1%} "
          f"(median tensor), {worst:.1%} (worst tensor)")

    # 3. tri_stage phase lengths: updates whose lr differs (int() vs round())
    for total in (47, 55, 123):
        def lrs(rounding):
            w, h, d = (rounding(total * r) for r in (0.1, 0.4, 0.5))
            out = []
            for n in range(total):
                if n < w:
                    out.append(0.01 + 0.99 * n / w)
                elif n < w + h:
                    out.append(1.0)
                elif n <= w + h + d:
                    out.append(math.exp(math.log(0.05) * (n - w - h) / d))
                else:
                    out.append(0.05)
            return out
        diff = sum(abs(a - c) > 1e-12 for a, c in zip(lrs(int), lrs(round)))
        assert resolve_length(0.1, total, "k") == round(total * 0.1)
        print(f"3 tri_stage at {total} updates: {diff} updates run at another lr")

    # 4. wav2vec 1.0 head init (512 -> 512, K = 12)
    print(f"4 head init std: fairseq {1 / math.sqrt(512 * 12 * 3):.4f}, "
          f"before {1 / math.sqrt(512 * 3):.4f}")

    # 5. wav2vec 1.0 compat sampler: fairseq's indices against the same sampler without the
    #    unused draw (the code before this change), same seed
    torch.manual_seed(0)
    fairseq_idx = fairseq_negatives(2, 100, 10)
    torch.manual_seed(0)
    before = torch.randint(0, 99, (2, 1000))
    before = before + (before >= torch.arange(100).repeat_interleave(10)).long()
    before = (before + torch.arange(2)[:, None] * 100).view(2, 10, 100).transpose(1, 2)
    changed = 1.0 - float((fairseq_idx == before).float().mean())
    print(f"5 wav2vec 1.0 compat sampler, B=2, T=100, N=10: {changed:.0%} of the indices differ "
          f"from fairseq's without the unused draw")

    # 6. feature penalty on the padded batch: valid frames vs every frame
    losses, grads, pens = {}, {}, {}
    for compat in (False, True):
        m, o = small(encoder_compat=compat)
        loss, out = step(m, o, b, 0)
        loss.backward()
        losses[compat], pens[compat] = float(loss.detach()), float(out.stats["penalty"])
        grads[compat] = [blk.conv.weight.grad.clone() for blk in m.encoder.conv_layers]
    rel = [float((a - c).norm() / c.norm()) for a, c in zip(grads[False], grads[True])]
    print(f"6 penalty, padded 16000/16000/12000: penalty {abs(pens[False] / pens[True] - 1):.1%}, "
          f"loss per masked frame {abs(losses[False] / losses[True] - 1):.1%}, conv weight "
          f"gradients {min(rel):.0%}-{max(rel):.0%}")

    # 7. wav2vec 2.0 cross-sample negatives: distractors equal to the positive
    for n_neg, n_cross, per_utt in ((0, 25, 380), (25, 25, 380), (25, 25, 20)):
        counts = torch.full((3,), per_utt)
        rows = torch.arange(3 * per_utt)[:, None]
        torch.manual_seed(0)
        compat = torch.cat([fairseq_negative_indices(counts, n_neg, n_cross) for _ in range(20)])
        fixed = sample_negative_indices(counts, n_neg, n_cross)
        rate = float((compat == rows.repeat(20, 1)).float().mean())
        print(f"7 negatives B=3, {per_utt} masked each, {n_neg}+{n_cross}: fairseq draws the "
              f"positive for {rate:.2%} of distractors, w2v for {float((fixed == rows).float().mean()):.2%}")

    # 8. GRU aggregator: fairseq's recurrence across the batch vs over time (batch of 2)
    torch.manual_seed(0)
    ours = GRUAggregator(GRUAggregator.Config(dim=512, fairseq_compat=True), 512)
    default = GRUAggregator(GRUAggregator.Config(dim=512), 512)
    default.load_state_dict(ours.state_dict())
    z = torch.randn(2, 100, 512)
    with torch.no_grad():
        gap = (ours(z).output - default(z).output).abs().max()
    print(f"8 GRU, batch of 2, random weights: outputs differ by up to {float(gap):.3f}")

    # 9. wav2vec-U code penalty: padded segments in the prob perplexity (fairseq) or not
    from w2v.plugins.wav2vec_u.penalties import code_penalty, perplexities
    from w2v.plugins.wav2vec_u.segmentation import join_segments

    torch.manual_seed(0)
    v = 56
    logits = torch.randn(32, 120, v)
    logits[..., :10] += 6.0                  # a generator that uses 10 of its 56 outputs
    seg, n = join_segments(logits, torch.randint(40, 121, (32,)), random_frame=False)
    ours, theirs = (code_penalty(perplexities(seg, n, valid_only=valid)[1], v)
                    for valid in (True, False))
    print(f"9 wav2vec-U code penalty, a generator using 10 of 56 phones, batch of 32 "
          f"({float(n.sum()) / seg.shape[0] / seg.shape[1]:.0%} of segments valid): "
          f"{float(ours):.3f} (valid segments) vs {float(theirs):.3f} (fairseq: padding counts)")


if __name__ == "__main__":
    main()
