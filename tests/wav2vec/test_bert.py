"""BERT on discrete units: span masking, the unit embedding, the objective, the unit loader."""

from __future__ import annotations

import pytest
import torch

from w2v.build import ModelConfig, build_model, build_objective
from w2v.config.structure import structure, structure_component
from w2v.data.dictionary import Dictionary
from w2v.errors import FitError
from w2v.interfaces import Batch
from w2v.plugins.wav2vec.bert import PAD_ID, span_mask
from w2v.plugins.data.units import build_unit_loader

torch.set_num_threads(1)


def runs(row: list[bool]) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    out, start = [], None
    for i, v in enumerate(row + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i - start))
            start = None
    return out


def test_span_mask_follows_the_papers_setting():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1000] * 48 + [600, 7, 1])
    mask = span_mask(lengths, 1000, 0.05, 10, generator=g)
    valid = torch.arange(1000)[None] < lengths[:, None]
    assert not (mask & ~valid).any()
    assert (mask.sum(1) >= 1).all()                              # every utterance masked
    frac = mask[:48].float().mean().item()                       # 50 starts x 10, overlapping
    assert 0.34 < frac < 0.46, frac                              # 1 - 0.95^10 = 0.40
    for b in range(49):
        n = int(lengths[b])
        for start, length in runs(mask[b, :n].tolist()):
            assert length >= 10 or start + length == n           # spans only cut at the end


def unit_model(vocab=20, dim=16, causal=False, tie=True):
    cfg = structure({"encoder": {"name": "unit_embedding", "dim": dim, "vocab_size": vocab},
                     "aggregator": {"name": "transformer", "embed_dim": 16, "layers": 1,
                                    "ffn_dim": 32, "heads": 2, "conv_pos": 4,
                                    "conv_pos_groups": 2, "dropout": 0.0,
                                    "attention_dropout": 0.0, "causal": causal},
                     "quantize": "none"}, ModelConfig, path=("model",))
    model = build_model(cfg)
    spec = structure_component("objective", {"name": "bert", "tie_embeddings": tie},
                               path="objective")
    return model, build_objective(spec, model)


def test_objective_sums_cross_entropy_over_masked_units():
    torch.manual_seed(0)
    model, objective = unit_model()
    source = torch.randint(4, 20, (3, 40))
    lengths = torch.tensor([40, 25, 12])
    source[1, 25:] = PAD_ID
    source[2, 12:] = PAD_ID
    out = objective(Batch(source=source, lengths=lengths), model, 0)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    n = int(out.sample_size)
    assert 3 <= n <= 77
    assert abs(float(out.stats["loss_bits"]) * n * 0.6931 - float(out.loss.detach())) < 1e-3 * n
    out.loss.backward()
    assert model.encoder.embed.weight.grad is not None
    assert model.encoder.embed.weight.grad[model.encoder.mask_id].abs().sum() > 0   # [MASK] used
    assert model.aggregator.layers[0].fc1.weight.grad.abs().sum() > 0
    assert objective.head.dense.weight.grad.abs().sum() > 0
    assert sum(p.numel() for p in objective.parameters()) < 16 * 16 + 16 * 3 + 20 + 10  # tied


def test_corruption_replaces_masked_units_only():
    torch.manual_seed(0)
    model, objective = unit_model()
    source = torch.randint(4, 20, (4, 500))
    mask = torch.rand(4, 500) < 0.5
    x = objective.corrupt(source, mask)
    assert torch.equal(x[~mask], source[~mask])
    assert (x[mask] == model.encoder.mask_id).all()
    objective.config = objective.config.__class__(random_token_prob=0.1, leave_unmasked_prob=0.1)
    x = objective.corrupt(source, mask)
    masked = x[mask]
    assert 0.7 < (masked == model.encoder.mask_id).float().mean() < 0.9
    assert torch.equal(x[~mask], source[~mask])


def test_fit_errors_name_the_disagreement():
    with pytest.raises(FitError, match="causal"):
        unit_model(causal=True)
    with pytest.raises(FitError, match="width"):
        unit_model(dim=24)
    unit_model(dim=24, tie=False)                               # untied: any width
    cfg = structure({"encoder": {"name": "wav2vec_conv", "layers": [[8, 10, 5]]},
                     "aggregator": {"name": "gru", "dim": 8}}, ModelConfig, path=("model",))
    with pytest.raises(FitError, match="unit_embedding"):
        build_objective(structure_component("objective", {"name": "bert"}, path="o"),
                        build_model(cfg))
    model, _ = unit_model()
    with pytest.raises(FitError, match="unit ids"):
        model.encoder(torch.randn(2, 100))


def test_a_tiny_bert_learns_to_fill_in_a_pattern():
    """Units following a cycle of 6 (random phase): masked units are predictable from their
    neighbours, so accuracy must rise far above chance (1/16) within a few dozen updates."""
    torch.manual_seed(0)
    model, objective = unit_model(vocab=20)
    objective.config = objective.config.__class__(mask_prob=0.15, mask_length=2)
    params = list(model.parameters()) + list(objective.parameters())
    opt = torch.optim.Adam(params, lr=5e-3)
    t = torch.arange(30)
    for step in range(60):
        phase = torch.randint(0, 6, (16, 1))
        source = 4 + (t[None] + phase) % 6
        out = objective(Batch(source=source, lengths=torch.full((16,), 30)), model, step)
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
    assert float(out.stats["accuracy"]) > 0.6


def write_units(tmp_path, lines):
    (tmp_path / "train.src").write_text("".join(line + "\n" for line in lines))
    d = Dictionary.from_symbols(["1-1", "2-2", "3-3"])
    d.save(tmp_path / "dict.src.txt")
    return Dictionary.load(tmp_path / "dict.src.txt")


def test_unit_loader_pads_crops_and_repeats_itself(tmp_path):
    lines = ["1-1 2-2 3-3", "", "3-3", "2-2 2-2 2-2 2-2 2-2 2-2 2-2 1-1", "9-9 1-1"]
    d = write_units(tmp_path, lines)
    loader, sampler = build_unit_loader(tmp_path, "train", d, max_tokens=8, max_len=4,
                                        min_len=2, seed=3)
    batches = list(loader)
    seen = sorted(int(i) for b in batches for i in b.ids)
    assert seen == [0, 3, 4]                                    # empty and 1-unit lines left out
    for b in batches:
        assert b.source.dtype == torch.long and b.source.shape[1] <= 4
        assert b.source.numel() <= 8
        for row, n in zip(b.source, b.lengths):
            assert (row[n:] == d.pad).all() and (row[:n] != d.pad).all()
    by_id = {int(i): row[:n] for b in batches for i, row, n in zip(b.ids, b.source, b.lengths)}
    assert by_id[4].tolist() == [d.unk, d.index("1-1")]          # unknown unit -> <unk>
    assert by_id[3].tolist()[:3] == [d.index("2-2")] * 3          # a 4-unit window of row 3
    again, _ = build_unit_loader(tmp_path, "train", d, max_tokens=8, max_len=4, min_len=2,
                                 seed=3)
    assert [b.source.tolist() for b in again] == [b.source.tolist() for b in batches]
