"""The wav2vec 2.0 BASE fine-tuning recipes (recipes/finetune/base_*.yaml): every one passes
--dry-run, carries fairseq's examples/wav2vec/config/finetuning/base_*.yaml hyperparameters, and
its fine-tuning stage starts from a checkpoint path (a released model) with the feature encoder
and, during freeze_finetune_updates, the whole wav2vec model frozen."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "finetune"
SETTINGS = ["10m", "1h", "10h", "100h", "960h"]

#: fairseq examples/wav2vec/config/finetuning/base_*.yaml: lr, max_update,
#: freeze_finetune_updates, mask_prob, mask_channel_prob, layerdrop, GPUs x update_freq.
FAIRSEQ = {
    "10m": (5e-5, 13000, 10000, 0.65, 0.25, 0.1, 2 * 4),
    "1h": (5e-5, 13000, 10000, 0.65, 0.25, 0.1, 2 * 4),
    "10h": (5e-5, 20000, 10000, 0.65, 0.5, 0.05, 2 * 4),
    "100h": (3e-5, 80000, 0, 0.65, 0.5, 0.1, 2 * 4),
    "960h": (1e-4, 320000, 0, 0.5, 0.1, 0.1, 8 * 1),
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_finetuning_recipe_passes_dry_run(setting, run_cli):
    result = run_cli(RECIPES / f"base_{setting}.yaml", "--dry-run")
    assert result.code == 0, result.err
    assert "stage `finetune` (finetune)" in result.out and "total model parameters" in result.out


@pytest.mark.parametrize("setting", SETTINGS)
def test_finetuning_recipe_has_fairseq_hyperparameters(setting):
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages

    lr, updates, freeze, mask_prob, channel_prob, layerdrop, batches = FAIRSEQ[setting]
    plans = plan_stages(load_recipe(RECIPES / f"base_{setting}.yaml"))
    assert list(plans) == ["pretrain", "finetune", "dev_other", "test_clean", "test_other",
                           "report"]
    ft = plans["finetune"]
    init = ft.spec.config.init
    assert init.from_ == "pretrain" and set(init.components) == {"encoder", "aggregator",
                                                                 "masker"}
    model, trainer, data = ft.sections.model, ft.sections.trainer, ft.sections.data
    assert model.encoder.config.feature_grad_mult == 0.0              # conv encoder frozen
    assert model.quantizer is None and model.head.name == "ctc"
    assert model.head.config.dropout == 0.0 and model.dropout_input == 0.0
    agg = model.aggregator.config
    assert (agg.dropout, agg.attention_dropout, agg.activation_dropout, agg.layerdrop) == \
        (0.0, 0.0, 0.1, layerdrop)
    masker = model.masker.config
    assert (masker.mask_prob, masker.mask_length, masker.mask_channel_prob,
            masker.mask_channel_length) == (mask_prob, 10, channel_prob, 64)
    assert ft.sections.objective.name == "ctc" and ft.sections.objective.config.apply_mask
    assert ft.sections.objective.config.zero_infinity
    assert (trainer.lr, trainer.max_updates, tuple(trainer.betas), trainer.eps,
            trainer.weight_decay) == (lr, updates, (0.9, 0.98), 1e-8, 0.0)
    sched = trainer.schedule
    assert sched.name == "tri_stage"
    assert (sched.warmup, sched.hold, sched.decay, sched.init_lr_scale, sched.final_lr_scale) \
        == (0.1, 0.4, 0.5, 0.01, 0.05)
    expected_freeze = {} if freeze == 0 else {s: freeze for s in ("encoder", "projection",
                                                                  "aggregator", "masker")}
    assert dict(trainer.freeze_updates) == expected_freeze
    # fairseq: max_tokens 3.2M samples per GPU x GPUs x update_freq = 1600 s per update
    assert data.max_tokens == 3_200_000 and data.labels == "ltr" and data.pad
    assert trainer.batch_seconds == pytest.approx(batches * 3_200_000 / 16000)
    assert trainer.best_metric == "wer"


TINY = [
    "model.encoder.conv_layers=[[16,10,5],[16,3,2],[16,3,2],[16,3,2],[16,3,2],[16,2,2],[16,2,2]]",
    "model.aggregator.embed_dim=16", "model.aggregator.layers=2", "model.aggregator.ffn_dim=32",
    "model.aggregator.heads=2", "model.aggregator.conv_pos=4", "model.aggregator.conv_pos_groups=2",
    "model.quantizer.num_vars=8", "model.quantizer.dim=16", "objective.final_dim=16",
    "data.num_workers=0", "stages.finetune.model.masker.mask_channel_length=4",
    "stages.finetune.trainer.max_updates=2", "stages.finetune.trainer.batch_seconds=null",
    "stages.finetune.trainer.precision=fp32", "stages.finetune.trainer.valid_interval=2",
]


def test_finetuning_starts_from_a_checkpoint_path_with_the_wav2vec_model_frozen(
        run_cli, tmp_path, monkeypatch):
    """base_10m at tiny sizes: `stages.finetune.init.from=PATH` loads a pretrained model file
    (standing in for a released checkpoint); for two updates (inside freeze_finetune_updates)
    only the CTC head trains."""
    import numpy as np
    import soundfile as sf

    from w2v.build import build_model
    from w2v.checkpoint_formats import load_w2v, save_model
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages

    data = tmp_path / "librispeech"
    data.mkdir()
    rng = np.random.default_rng(0)
    texts = ["T E N |", "N O T E |", "E A T | O N |", "A T E |"]
    for i in range(len(texts)):
        sf.write(data / f"u{i}.wav", (0.1 * rng.standard_normal(16000)).astype("float32"), 16000)
    rows = "".join(f"u{i}.wav\t16000\n" for i in range(len(texts)))
    for name in ("train_10m", "dev_other"):
        (data / f"{name}.tsv").write_text(f"{data}\n{rows}")
        (data / f"{name}.ltr").write_text("\n".join(texts) + "\n")
    (data / "dict.ltr.txt").write_text("".join(f"{c} 10\n" for c in "|ETANO"))
    monkeypatch.setenv("LIBRISPEECH", str(data))

    recipe = RECIPES / "base_10m.yaml"
    pretrain = plan_stages(load_recipe(recipe, TINY))["pretrain"].sections.model
    torch.manual_seed(3)
    released = save_model(build_model(pretrain), pretrain, tmp_path / "released" / "model.pt")

    result = run_cli(recipe, "--out", tmp_path / "run", "--stages", "finetune", *TINY,
                     f"stages.finetune.init.from={released}")
    assert result.code == 0, result.err
    source = load_w2v(released).state_dict()
    tuned = load_w2v(tmp_path / "run" / "finetune" / "model.pt").state_dict()
    copied = [k for k in tuned if k.startswith(("encoder.", "aggregator.", "projection.",
                                                "masker."))]
    assert any(k.startswith("masker.") for k in copied) and len(copied) > 20
    for key in copied:
        assert torch.equal(tuned[key], source[key]), key             # loaded, and frozen
    assert not any(k.startswith("head.") for k in source)
    assert tuned["head.proj.weight"].shape == (4 + 6, 16)            # 4 specials + | E T A N O
