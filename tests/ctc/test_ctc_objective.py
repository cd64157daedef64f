"""CTC head and objective: padded frames forced to blank, the loss against a direct
F.ctc_loss, fit checks, masking in training only, and a tiny fine-tuning run that
learns a synthetic task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ctc_synthetic import letters, make_batch, random_texts, tiny_model  # noqa: F401

from w2v.config.structure import structure_component
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Head
from w2v.plugins.ctc import CTCHead, emissions
from w2v.plugins.ctc.decoders import CTCGreedyDecoder
from w2v.plugins.ctc.metrics import check_not_degenerate
from w2v.plugins.ctc.objective import CTCConfig, CTCObjective


def test_head_forces_padded_frames_to_blank():
    torch.manual_seed(0)
    head = CTCHead(CTCHead.Config(), 8, 6, blank=0)
    x = torch.randn(2, 5, 8)
    logits = head(x, torch.tensor([5, 2]))
    lp = F.log_softmax(logits.float(), -1)
    assert torch.equal(logits[0], head.proj(x[0]))                   # full row untouched
    assert torch.equal(logits[1, :2], head.proj(x[1, :2]))
    assert (lp[1, 2:, 0] == 0).all() and (lp[1, 2:, 1:] < -1e30).all()
    assert torch.isfinite(lp[1, 2:, 0]).all()


def test_head_blank_weight_modes():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4)
    base = CTCHead(CTCHead.Config(), 4, 5, blank=1)
    add = CTCHead(CTCHead.Config(blank_weight=2.5), 4, 5, blank=1)
    put = CTCHead(CTCHead.Config(blank_weight=-3.0, blank_mode="set"), 4, 5, blank=1)
    add.load_state_dict(base.state_dict())
    put.load_state_dict(base.state_dict())
    ref = base(x)
    assert torch.allclose(add(x)[..., 1], ref[..., 1] + 2.5)
    assert torch.equal(add(x)[..., [0, 2, 3, 4]], ref[..., [0, 2, 3, 4]])
    assert (put(x)[..., 1] == -3.0).all()


def test_emissions_of_a_padded_batch_are_blank_after_each_length(letters):
    torch.manual_seed(0)
    model = tiny_model(len(letters)).eval()
    g = torch.Generator().manual_seed(1)
    batch = make_batch(letters, ["T E N |", "A |"], g)
    lp, frames = emissions(model, batch.source, batch.lengths)
    assert lp.dtype == torch.float32 and lp.shape[-1] == len(letters)
    short = int(frames[1])
    assert short < lp.shape[1]
    assert (lp[1, short:].argmax(-1) == letters.blank).all()
    assert torch.allclose(lp[1, short:, letters.blank], torch.zeros(lp.shape[1] - short))


def test_loss_is_fairseq_ctc_sum_over_target_tokens(letters):
    torch.manual_seed(0)
    model = tiny_model(len(letters)).eval()
    g = torch.Generator().manual_seed(2)
    batch = make_batch(letters, ["T E N |", "A | O |", "E |"], g)
    obj = CTCObjective(CTCConfig(apply_mask=False, wer_valid=False), letters)
    out = obj(batch, model, step=0)
    lp, frames = emissions(model, batch.source, batch.lengths)
    flat = torch.cat([t[:n] for t, n in zip(batch.targets, batch.target_lengths)])
    ref = F.ctc_loss(lp.transpose(0, 1), flat, frames, batch.target_lengths, blank=0,
                     reduction="sum", zero_infinity=True)
    assert torch.allclose(out.loss, ref, rtol=1e-5)
    assert int(out.sample_size) == int(batch.target_lengths.sum()) == 4 + 4 + 2
    assert out.stats["n_sentences"] == 3 and int(out.stats["n_tokens"]) == 10
    # without target_lengths, pad and eos are excluded from the targets
    padded = batch.targets.clone()
    padded[2, 2] = letters.eos
    batch2 = type(batch)(source=batch.source, lengths=batch.lengths, targets=padded)
    assert torch.allclose(obj(batch2, model, 0).loss, ref, rtol=1e-5)


def test_check_model_rejects_missing_or_mismatched_heads(letters):
    obj = CTCObjective(CTCConfig(apply_mask=False), letters)
    model = tiny_model(len(letters))
    obj.check_model(model)
    model.head = None
    with pytest.raises(FitError, match="needs a model with an output head"):
        obj.check_model(model)
    with pytest.raises(FitError, match=f"5 outputs but the dictionary has {len(letters)}"):
        obj.check_model(tiny_model(5))
    with pytest.raises(FitError, match="no masker"):
        CTCObjective(CTCConfig(apply_mask=True), letters).check_model(tiny_model(len(letters)))


class PlainHead(Head):
    """Another plugin's head: a bare Linear, no blank handling of its own."""

    def __init__(self, dim, vocab):
        super().__init__()
        self.proj = torch.nn.Linear(dim, vocab)
        self.vocab_size = vocab

    def forward(self, x, lengths=None):
        return self.proj(x)


def test_any_head_of_the_right_size_fits_and_gets_padding_forced_to_blank(letters):
    torch.manual_seed(0)
    model = tiny_model(len(letters)).eval()
    model.head = PlainHead(32, len(letters))
    obj = CTCObjective(CTCConfig(apply_mask=False), letters)
    obj.check_model(model)
    g = torch.Generator().manual_seed(6)
    batch = make_batch(letters, ["T E N |", "A |"], g)
    lp, frames = obj.log_probs(model(batch))
    short = int(frames[1])
    assert (lp[1, short:, letters.blank] == 0).all()
    assert torch.equal(lp[0], emissions(model, batch.source, batch.lengths)[0][0])
    with pytest.raises(FitError, match="3 outputs"):
        model.head = PlainHead(32, 3)
        obj.check_model(model)


def test_registered_objective_builds_with_dictionary_context(letters, tmp_path):
    path = tmp_path / "dict.ltr.txt"
    letters.save(path)
    spec = structure_component("objective", {"name": "ctc", "apply_mask": False})
    obj = spec.build(None, dictionary=str(path))
    assert isinstance(obj, CTCObjective) and obj.dictionary.symbols == letters.symbols
    assert set(obj.valid_metrics()) >= {"wer", "uer"}


def test_recipe_sections_build_a_ctc_model_and_objective(letters, toy_plugins):
    """``model.head: {name: ctc}`` through the core builders, with the toy encoder."""
    from w2v.build import ModelConfig, build_model, build_objective
    from w2v.config.structure import structure

    section = {"encoder": {"name": "toy_encoder", "dim": 8, "stride": 160},
               "aggregator": {"name": "toy_aggregator", "layers": 1, "dim": 12},
               "head": {"name": "ctc", "dropout": 0.1, "blank_weight": 0.5}}
    model = build_model(structure(section, ModelConfig, path=("model",)), dictionary=letters)
    assert isinstance(model.head, CTCHead)
    assert (model.head.proj.in_features, model.head.vocab_size) == (12, len(letters))
    assert model.head.blank_weight == 0.5 and model.head.dropout.p == 0.1
    spec = structure_component("objective", {"name": "ctc", "apply_mask": False})
    obj = build_objective(spec, model, dictionary=letters)
    g = torch.Generator().manual_seed(5)
    batch = make_batch(letters, random_texts(2, g), g)
    batch.source = torch.nn.functional.pad(batch.source, (0, 3200))   # >= 1 frame per label
    batch.lengths = batch.lengths + 3200
    out = obj(batch, model, 0)
    assert torch.isfinite(out.loss) and out.loss > 0
    with pytest.raises(ConfigError, match="label dictionary"):
        structure_component("head", {"name": "ctc"}).build(model.context_signal())


def test_masking_applies_in_training_only_and_overrides_the_masker(letters):
    from w2v.plugins.wav2vec2.masking import SpanMasker, SpanMaskerConfig

    torch.manual_seed(0)
    masker = SpanMasker(SpanMaskerConfig(mask_prob=0.3, mask_length=2, min_masks=1), 32)
    model = tiny_model(len(letters), masker=masker)
    obj = CTCObjective(CTCConfig(apply_mask=True, mask_prob=0.6, mask_channel_prob=0.2),
                       letters)
    obj.check_model(model)
    g = torch.Generator().manual_seed(3)
    batch = make_batch(letters, random_texts(4, g), g)

    seen = []
    sample = masker.sample
    masker.sample = lambda *args, **settings: seen.append(settings) or sample(*args, **settings)
    model.train()
    obj(batch, model, 0).loss.backward()
    assert masker.mask_emb.grad is not None and masker.mask_emb.grad.abs().sum() > 0
    # the overrides reach the masker as forward arguments; its own config never changes
    assert seen == [{"mask_prob": 0.6, "mask_channel_prob": 0.2}]
    assert masker.config.mask_prob == 0.3 and masker.config.mask_channel_prob == 0.0
    assert masker.settings(seen[0]).mask_length == 2            # not overridden
    with pytest.raises(FitError, match="mask_span"):
        masker.check_settings({"mask_span": 3})

    model.eval()
    masker.mask_emb.grad = None
    with torch.no_grad():
        a = obj(batch, model, 0).loss
        b = obj(batch, model, 0).loss
    assert torch.equal(a, b)                                    # no random masking in eval
    assert len(seen) == 1
    lp, frames = emissions(model, batch.source, batch.lengths)
    flat = torch.cat([t[:n] for t, n in zip(batch.targets, batch.target_lengths)])
    ref = F.ctc_loss(lp.transpose(0, 1), flat, frames, batch.target_lengths, reduction="sum",
                     zero_infinity=True)
    assert torch.allclose(a, ref, rtol=1e-5)


def test_finetuning_learns_the_synthetic_task(letters):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = tiny_model(len(letters))
    obj = CTCObjective(CTCConfig(apply_mask=False), letters)
    obj.check_model(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train = make_batch(letters, random_texts(16, g), g)
    valid = make_batch(letters, random_texts(8, g), g)

    model.eval()
    with torch.no_grad():
        before = obj(valid, model, 0)
    losses = []
    model.train()
    for step in range(60):
        out = obj(train, model, step)
        loss = out.loss / out.sample_size
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        after = obj(valid, model, 0)

    assert losses[-1] < 0.1 * losses[0]
    assert after.loss < 0.2 * before.loss
    assert before.stats["wer"] == 100.0 and after.stats["wer"] < 50.0
    assert after.stats["n_words"] == sum(t.count("|") for t in [
        letters.string(t[:n]) for t, n in zip(valid.targets, valid.target_lengths)])
    greedy = CTCGreedyDecoder(CTCGreedyDecoder.Config(), letters)
    hyps = greedy.decode(*emissions(model, valid.source, valid.lengths))
    assert all(h.text for h in hyps) and check_not_degenerate([h.text for h in hyps]) is None
    # corpus rates come from the counts the trainer's meter sums over batches
    from w2v.train.metrics import WeightedMeter

    meter = WeightedMeter()
    counts = {k: 0.0 for k in ("n_word_errors", "n_words", "n_unit_errors", "n_units")}
    for _ in range(2):
        with torch.no_grad():
            part = obj(make_batch(letters, random_texts(3, g), g), model, 0)
        meter.add({k: float(v) for k, v in part.stats.items()}, float(part.sample_size))
        counts = {k: counts[k] + part.stats[k] for k in counts}
    final = obj.finalize_stats(meter.result())
    assert final["wer"] == pytest.approx(100 * counts["n_word_errors"] / counts["n_words"])
    assert final["uer"] == pytest.approx(100 * counts["n_unit_errors"] / counts["n_units"])

def test_untrained_blank_only_model_is_flagged_degenerate(letters):
    model = tiny_model(len(letters)).eval()
    with torch.no_grad():          # the usual early fine-tuning state: blank wins everywhere
        model.head.proj.weight.zero_()
        model.head.proj.bias.zero_()
        model.head.proj.bias[letters.blank] = 5.0
    g = torch.Generator().manual_seed(4)
    batch = make_batch(letters, random_texts(5, g), g)
    greedy = CTCGreedyDecoder(CTCGreedyDecoder.Config(), letters)
    hyps = greedy.decode(*emissions(model, batch.source, batch.lengths))
    assert [h.text for h in hyps] == [""] * 5
    assert "empty" in check_not_degenerate([h.text for h in hyps])
    out = CTCObjective(CTCConfig(apply_mask=False), letters)(batch, model, 0)
    assert out.stats["wer"] == 100.0 and out.stats["uer"] == 100.0


def test_lstm_probe_head_output_is_the_same_alone_and_padded_in_a_batch():
    from w2v.plugins.ctc.head import CTCHead

    torch.manual_seed(0)
    head = CTCHead(CTCHead.Config(lstm_layers=2, lstm_dim=4), 6, 5).eval()
    a, b = torch.randn(1, 7, 6), torch.randn(1, 4, 6)
    batch = torch.zeros(2, 7, 6)
    batch[0], batch[1, :4] = a[0], b[0]
    out = head(batch, torch.tensor([7, 4]))
    assert torch.allclose(out[0], head(a)[0], atol=1e-6)
    assert torch.allclose(out[1, :4], head(b)[0], atol=1e-6)
    assert (out[1, 4:].argmax(-1) == head.blank).all()  # padding forced to blank
