"""Conformer interop beyond parity: export to a Hugging Face ``Wav2Vec2Conformer*`` directory
and back, what cannot be exported, and CTC fine-tuning that starts from an imported Conformer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from test_conformer_parity import hf_conformer, hf_features, max_differences, padded_batch

import w2v
from w2v.errors import UserError
from w2v.plugins.wav2vec2.interop import to_hf

transformers = pytest.importorskip("transformers")
from transformers import (Wav2Vec2ConformerForCTC,  # noqa: E402
                          Wav2Vec2ConformerForPreTraining)

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("pos", ["rel_pos", "rope"])
def test_export_round_trip_through_hugging_face(tmp_path, pos):
    """HF directory -> w2v -> exported HF directory: transformers loads it without missing or
    unexpected weights and computes what the original computed; w2v re-imports it."""
    hf = hf_conformer(Wav2Vec2ConformerForPreTraining, pos)
    hf.save_pretrained(tmp_path / "source")
    model = w2v.load_pretrained(tmp_path / "source")
    report = to_hf(tmp_path / "source", tmp_path / "exported")   # keeps project_q / project_hid
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["model_type"] == "wav2vec2-conformer"
    assert config["architectures"] == ["Wav2Vec2ConformerForPreTraining"]
    assert config["position_embeddings_type"] == {"rel_pos": "relative", "rope": "rotary"}[pos]
    back, info = Wav2Vec2ConformerForPreTraining.from_pretrained(tmp_path / "exported",
                                                                 output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    back.eval()
    wave, lengths = padded_batch([3200, 2500])
    with torch.no_grad():
        ours = model.extract_features(wave, lengths)
    for peer in (hf, back):
        assert max(max_differences(ours, hf_features(peer, wave, lengths)).values()) < 1e-4
    torch.testing.assert_close(back.project_hid.weight, hf.project_hid.weight)
    torch.testing.assert_close(back.quantizer.codevectors, hf.quantizer.codevectors)
    again = w2v.load_pretrained(tmp_path / "exported")
    with torch.no_grad():
        torch.testing.assert_close(again.extract_features(wave, lengths).output, ours.output)
    assert not report.dropped


def test_ctc_conformer_exports_with_its_tokenizer(tmp_path):
    hf = hf_conformer(Wav2Vec2ConformerForCTC, "rope")
    hf.save_pretrained(tmp_path / "source")
    dictionary = tmp_path / "dict.ltr.txt"
    dictionary.write_text("".join(f"{c} 5\n" for c in "|EATN"))          # 4 specials + 5 = 9
    model = w2v.load_pretrained(tmp_path / "source")
    to_hf(model, tmp_path / "exported", dictionary=dictionary)
    assert (tmp_path / "exported" / "vocab.json").is_file()
    back = Wav2Vec2ConformerForCTC.from_pretrained(tmp_path / "exported").eval()
    wave = torch.randn(1, 3200)
    with torch.no_grad():
        torch.testing.assert_close(back(wave).logits, hf(wave).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("recipe, what", [
    ("wav2vec2_conformer_base.yaml", "positional conv"),
    ("wav2vec2_conformer_relpos.yaml", "post-LN Conformer"),
])
def test_what_hugging_face_cannot_express_is_refused(recipe, what, tmp_path):
    from w2v.build import build_model
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages

    tiny = ["model.aggregator.embed_dim=16", "model.aggregator.layers=1",
            "model.aggregator.ffn_dim=16", "model.aggregator.heads=2",
            "model.aggregator.conv_pos=4", "model.aggregator.conv_pos_groups=2",
            "model.encoder.conv_layers=[[16,10,5]]", "model.quantizer.num_vars=4",
            "model.quantizer.dim=8", "objective.final_dim=8"]
    sections = plan_stages(load_recipe(RECIPES / recipe, tiny))["pretrain"].sections.model
    with pytest.raises(UserError, match=what) as err:
        to_hf(build_model(sections), tmp_path / "out")
    assert "rel_pos or rope" in (err.value.hint or "")


def test_ctc_finetuning_starts_from_an_imported_hugging_face_conformer(run_cli, tmp_path):
    """A few CTC updates from a Hugging Face rotary Conformer directory (`init.from`): the
    Conformer blocks (frozen for these updates, fairseq's freeze_finetune_updates) hold the
    imported weights, the feature encoder and the new CTC head train."""
    import numpy as np
    import soundfile as sf

    hf = hf_conformer(Wav2Vec2ConformerForPreTraining, "rope")
    hf.save_pretrained(tmp_path / "hf")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    texts = ["T E N |", "N O T E |", "E A T | O N |", "A T E |"]
    for i in range(len(texts)):
        sf.write(data / f"u{i}.wav", (0.1 * rng.standard_normal(8000)).astype("float32"), 16000)
    rows = "".join(f"u{i}.wav\t8000\n" for i in range(len(texts)))
    (data / "train.tsv").write_text(f"{data}\n{rows}")
    (data / "train.ltr").write_text("\n".join(texts) + "\n")
    (data / "dict.ltr.txt").write_text("".join(f"{c} 10\n" for c in "|ETANO"))
    recipe = tmp_path / "finetune.yaml"
    recipe.write_text(f"""\
base: {RECIPES / "wav2vec2_conformer_rope.yaml"}
data: {{train: {data / "train.tsv"}, valid: null, labels: ltr, pad: true, max_tokens: 40000, max_sample_size: 40000,
       min_sample_size: 0, num_workers: 0}}
model:
  encoder: {{mode: layer_norm, conv_bias: true, conv_layers: [[16, 10, 5], [16, 3, 2], [24, 2, 2]],
            feature_grad_mult: 1.0}}
  aggregator: {{embed_dim: 96, layers: 3, ffn_dim: 128, heads: 4, conformer_kernel: 7,
               layer_norm_first: true, fairseq_compat: true, dropout: 0.0, layerdrop: 0.0}}
  quantizer: null
  quantize: none
  masker: {{mask_prob: 0.2, mask_length: 2}}
  head: {{name: ctc}}
  dropout_input: 0.0
  dropout_features: 0.0
stages:
  pretrain: null
  finetune:
    name: finetune
    init: {{from: {tmp_path / "hf"}, components: [encoder, aggregator, masker]}}
    objective: {{name: ctc}}
    trainer: {{max_updates: 3, lr: 1.0e-3, precision: fp32, batch_seconds: null,
              schedule: {{name: fixed}}, log_interval: 1, valid_interval: 100,
              save_interval: 100, freeze_updates: {{aggregator: 100}}}}
""")
    result = run_cli(recipe, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
              .splitlines()]
    losses = [row["loss"] for row in logged if row.get("stage") == "finetune" and "loss" in row]
    assert len(losses) >= 3 and all(np.isfinite(losses))
    imported = w2v.load_pretrained(tmp_path / "hf")
    tuned = w2v.load_pretrained(tmp_path / "run" / "finetune")
    assert tuned.aggregator.config.pos_enc_type == "rope"
    before, after = dict(imported.named_parameters()), dict(tuned.named_parameters())
    blocks = [k for k in before if k.startswith("aggregator.")]
    assert len(blocks) > 50 and all(torch.equal(after[k], before[k]) for k in blocks)
    convs = [k for k in before if k.startswith("encoder.")]
    assert any(not torch.equal(after[k], before[k]) for k in convs)                 # trained
    assert after["head.proj.weight"].shape == (4 + 6, 96)


@pytest.mark.parametrize("recipe, pos", [("wav2vec2_conformer_base.yaml", "abs"),
                                         ("wav2vec2_conformer_relpos.yaml", "rel_pos"),
                                         ("wav2vec2_conformer_rope.yaml", "rope")])
def test_conformer_recipes_pass_dry_run_with_their_positions(run_cli, recipe, pos):
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages

    result = run_cli(RECIPES / recipe, "--dry-run")
    assert result.code == 0, result.err
    assert f"pos_enc_type: {pos}" in result.out
    agg = plan_stages(load_recipe(RECIPES / recipe))["pretrain"].sections.model.aggregator.config
    assert (agg.layer_type, agg.pos_enc_type, agg.layer_norm_first, agg.fairseq_compat) == \
        ("conformer", pos, False, False)
