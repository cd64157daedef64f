"""The checks before stage 1 (and in ``--dry-run``): every stage's own components, the evaluate
stage's decoders included, are registered and importable; what each stage reads is set and
exists; each stage's settings check out. A mistake stops a run in seconds, before anything is
written, instead of at the stage that would fail half an hour later."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from w2v import hookimpl, plugin_manager
from w2v.errors import ConfigError, MissingDependencyError
from w2v.registry import PLUGIN_API_VERSION, Requirement

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "recipes" / "demo.yaml"
BASE = ROOT / "recipes" / "wav2vec2_base.yaml"


def assert_stopped(result, run_dir: Path, *fragments: str) -> None:
    """Exit 2, one paragraph without traceback, and nothing written to the run directory."""
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err and result.err.startswith("w2vrun: error: ")
    for f in fragments:
        assert f in result.err, f"{f!r} not in {result.err!r}"
    assert not run_dir.exists()


@pytest.fixture
def no_flashlight(monkeypatch):
    """The machine of a user who installed w2v without its `demo`/`decode` extra."""
    monkeypatch.setitem(sys.modules, "flashlight.lib.text", None)


# ------------------------------------------------------------ optional packages


def test_dry_run_import_checks_the_evaluate_stages_decoders(run_cli, no_flashlight):
    result = run_cli(DEMO, "--dry-run")
    assert result.code == 2, result.out
    assert "Traceback" not in result.err
    err = result.err
    assert "`stages.evaluate.decoders.lm`" in err and "ctc_beam" in err
    assert "`pip install flashlight-text`" in err          # the real PyPI name
    assert "`pip install -e '.[decode]'`" in err            # the checkout form
    assert "w2v[decode]" not in err and "`flashlight`" not in err
    assert "demo.yaml:" in err                              # file and line of the section


def test_a_run_without_the_decoder_package_stops_before_stage_1(run_cli, no_flashlight,
                                                                 tmp_path):
    started = time.monotonic()
    result = run_cli(DEMO, "--out", tmp_path / "run")
    assert_stopped(result, tmp_path / "run", "flashlight-text", "stages.evaluate.decoders.lm")
    assert time.monotonic() - started < 60


def test_requirement_names_and_import_names():
    assert Requirement.parse("flashlight-text").module == "flashlight.lib.text"
    assert Requirement.parse("kenlm") == Requirement(package="kenlm", module="kenlm")
    assert Requirement.parse("scikit-learn").module == "sklearn"
    assert Requirement.parse("my-dist:my_pkg.sub") == Requirement(package="my-dist",
                                                                  module="my_pkg.sub")
    assert Requirement.parse("w2v-not-a-real-package").module == "w2v_not_a_real_package"
    assert Requirement.parse("torch").installed()
    assert not Requirement.parse("w2v-not-a-real-package").installed()


def test_a_third_party_component_declares_its_requirements(tmp_path, run_cli):
    """`requires=` on the registrar's add call; the hint names the plugin's own extra."""
    from w2v.interfaces import Decoder
    from w2v.plugins.ctc.decoders import CTCGreedyDecoder

    class Needy(CTCGreedyDecoder):
        """a decoder that imports a package nobody has"""

    assert issubclass(Needy, Decoder)
    module = types.ModuleType("needy_plugin")
    module.W2V_PLUGIN_API = ".".join(map(str, PLUGIN_API_VERSION))
    module.w2v_register_components = hookimpl(lambda registrar: registrar.add_component(
        "decoder", "needy", Needy, requires=["w2v-not-a-real-package"], extra="fast"))
    plugin_manager.reset(plugin_manager.load_plugins([("needy", module)]))
    reg = plugin_manager.registry().get("decoder", "needy")
    assert [r.package for r in reg.missing_requirements()] == ["w2v-not-a-real-package"]
    with pytest.raises(MissingDependencyError) as err:
        reg.check_requirements(key="decoder")
    assert isinstance(err.value, ConfigError)
    assert "`pip install w2v-not-a-real-package`" in err.value.hint
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{test: {recipe}, labels: ltr, pad: true}}\n"
                      "stages:\n  evaluate:\n    name: evaluate\n"
                      f"    models: [{tmp_path}]\n"
                      "    decoders: {mine: {name: needy}}\n")
    result = run_cli(recipe, "--dry-run")
    assert result.code == 2 and "w2v-not-a-real-package" in result.err
    assert "`stages.evaluate.decoders.mine`" in result.err and "r.yaml:6" in result.err


# ------------------------------------------------------------ data the stages read


def test_dry_run_warns_when_data_train_is_null(run_cli):
    result = run_cli(BASE, "--dry-run")
    assert result.code == 0, result.err
    warning = next(line for line in result.err.splitlines() if "warning" in line)
    assert "wav2vec2_base.yaml:" in warning
    assert "stage `pretrain` reads `data.train`, which is not set (null)" in warning
    assert "data.train=DIR/train.tsv" in warning
    assert "total model parameters" in result.out          # the dry run itself went on


def test_a_run_with_data_train_null_stops_before_stage_1(run_cli, tmp_path):
    result = run_cli(DEMO, "data.train=null", "--out", tmp_path / "run")
    assert_stopped(result, tmp_path / "run", "`data.train`", "not set (null)",
                   "w2vrun manifest")


def test_a_misspelt_corpus_or_a_missing_file_stops_the_run(run_cli, tmp_path):
    result = run_cli(DEMO, "data.train=dmeo:unlabeled", "--out", tmp_path / "run")
    assert_stopped(result, tmp_path / "run", "`dmeo:unlabeled`", "Did you mean `demo`?")
    missing = tmp_path / "nope.txt"
    result = run_cli(DEMO, f"stages.evaluate.lm_text={missing}", "--out", tmp_path / "run")
    assert_stopped(result, tmp_path / "run", "`stages.evaluate.lm_text`", str(missing),
                   "does not exist")


def test_missing_data_is_a_warning_in_a_dry_run(run_cli, tmp_path):
    result = run_cli(DEMO, f"stages.evaluate.decoders.lm.lexicon={tmp_path}/lex.txt",
                     "--dry-run")
    assert result.code == 0, result.err
    assert "`stages.evaluate.decoders.lm.lexicon`" in result.err and "warning" in result.err


# ------------------------------------------------------------ stage settings


def test_an_auto_lm_without_lm_text_stops_the_run(run_cli, tmp_path):
    for argv in ([DEMO, "stages.evaluate.lm_text=null", "--dry-run"],
                 [DEMO, "stages.evaluate.lm_text=null", "--out", tmp_path / "run"]):
        result = run_cli(*argv)
        assert result.code == 2, result.err
        assert "`stages.evaluate.decoders.lm.lm`" in result.err
        assert "`lm: auto`" in result.err and "lm_text" in result.err
    assert not (tmp_path / "run").exists()


def test_an_unknown_model_stage_is_named_with_the_nearest(run_cli, tmp_path):
    result = run_cli(DEMO, "stages.evaluate.models=[probe_pretraind]", "--out", tmp_path / "run")
    assert_stopped(result, tmp_path / "run", "`stages.evaluate.models`",
                   "Did you mean `probe_pretrained`?")


def test_evaluating_a_later_stage_is_refused(run_cli, tmp_path):
    result = run_cli(DEMO, "stages.evaluate.models=[report]", "--dry-run")
    assert result.code == 2 and "runs after this one" in result.err


def test_evaluate_needs_labels(run_cli, tmp_path):
    result = run_cli(DEMO, "stages.evaluate.data.labels=null", "--dry-run")
    assert result.code == 2 and "`data.labels`" in result.err and "null" in result.err


def test_the_demo_and_the_paper_recipes_pass_the_checks(run_cli):
    from w2v.config.recipe import load_recipe
    from w2v.stages import check_stages, plan_stages

    assert check_stages(plan_stages(load_recipe(DEMO, []))) == []
    finetune = ROOT / "recipes" / "finetune" / "base_10m.yaml"
    warnings = check_stages(plan_stages(load_recipe(finetune, [])), dry=True)
    assert warnings and all("warning" not in w for w in warnings)


def test_the_data_sources_package_is_checked_too(run_cli, monkeypatch, tmp_path):
    """`data: {name: hf_dataset}` declares `datasets`; without it the run stops at once."""
    monkeypatch.setitem(sys.modules, "datasets", None)
    result = run_cli(BASE, "data.name=hf_dataset", f"data.train={tmp_path}", "--out",
                     tmp_path / "run")
    assert_stopped(result, tmp_path / "run", "`datasets`", "`data.name`",
                   "`pip install datasets`")
