"""recipes/demo_claim.yaml puts both arms on equal footing (issue: the claim's protocol).

The from-scratch arm must train the very same parameters as the pretrained arm, for the same
number of updates, with nothing frozen for good; only the initialisation differs. Checked on
the meta device, so no corpus is built.
"""

from __future__ import annotations

from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo_claim.yaml"


def _plans():
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages

    return plan_stages(load_recipe(RECIPE))


def test_both_arms_train_the_same_parameters_for_the_same_updates():
    from w2v.build import build_model, on_meta
    from w2v.data.dictionary import Dictionary

    plans = _plans()
    letters = Dictionary.from_symbols(["|", *"ETAOINSHRDLUCMFWYPVBGKQJXZ'"])
    shapes = {}
    for arm in ("finetune", "scratch"):
        sec = plans[arm].sections
        assert sec.trainer.freeze == [], f"{arm} freezes parameters for the whole run"
        assert all(0 < f < 1 for f in sec.trainer.freeze_updates.values()), arm
        with on_meta():
            model = build_model(sec.model, 16000, dictionary=letters)
        shapes[arm] = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["finetune"] == shapes["scratch"]
    assert sum(1 for _ in shapes["scratch"]) > 10
    assert (plans["finetune"].sections.trainer.max_updates
            == plans["scratch"].sections.trainer.max_updates)


def test_only_the_pretrained_arm_starts_from_pretraining_and_data_is_50_to_1():
    from w2v.plugins.demo import CLAIM_CORPUS

    assert CLAIM_CORPUS["minutes"] / CLAIM_CORPUS["labeled_minutes"] >= 50
    plans = _plans()
    assert plans["finetune"].spec.config.init.from_ == "pretrain"
    assert plans["scratch"].spec.config.init is None
    assert plans["pretrain"].sections.data.train == "demo_claim:unlabeled"
    for arm in ("finetune", "scratch"):
        assert plans[arm].sections.data.train == "demo_claim:train"
