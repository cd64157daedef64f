"""``w2vrun``: every user-error category exits 2 with a located, helpful message and no traceback.

A few categories go through the real console script in a subprocess (the only
way to prove no traceback reaches the user); the rest run ``w2v.cli.main``
in-process. The toy plugin reaches the subprocess through an entry point, the
same way a pip-installed plugin would.
"""

from __future__ import annotations

import types

import pytest
import yaml

from core_testkit import TOY_RECIPE, make_entry_point_dist, write
from w2v import hookimpl, plugin_manager
from w2v.errors import ConfigError

pytest.importorskip("w2v.train.config", reason="w2v.train.config (TrainerConfig) not written yet")


def assert_clean_user_error(result, *fragments: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out
    assert result.err.startswith("w2vrun: error: ")
    for f in fragments:
        assert f in result.err, f"{f!r} not in {result.err!r}"


# =========================================================== through the real script
def test_unknown_component_name_subprocess(run_w2vrun, toy_entry_point, tmp_path):
    recipe = write(tmp_path / "r.yaml", TOY_RECIPE.replace("name: toy_quantizer",
                                                           "name: toy_quantiser"))
    result = run_w2vrun(recipe, "--dry-run", pythonpath=toy_entry_point)
    assert_clean_user_error(result, f"{recipe}:4", "`model.quantizer.name`",
                            "unknown quantizer `toy_quantiser`", "Did you mean `toy_quantizer`?",
                            "`toy_quantizer` from toy")


def test_unknown_key_subprocess(run_w2vrun, toy_entry_point, tmp_path):
    recipe = write(tmp_path / "r.yaml", TOY_RECIPE.replace("num_vars: 4", "num_var: 4"))
    result = run_w2vrun(recipe, "--dry-run", pythonpath=toy_entry_point)
    assert_clean_user_error(result, f"{recipe}:6", "`model.quantizer.num_var`", "unknown key",
                            "Did you mean `num_vars`?")


def test_wrong_type_subprocess(run_w2vrun, toy_entry_point, tmp_path):
    recipe = write(tmp_path / "r.yaml", TOY_RECIPE.replace("layers: 2", "layers: 2.7"))
    result = run_w2vrun(recipe, "--dry-run", pythonpath=toy_entry_point)
    assert_clean_user_error(result, f"{recipe}:8", "`model.aggregator.layers`",
                            "expected an integer, found 2.7")


def test_yaml_syntax_error_subprocess(run_w2vrun, tmp_path):
    recipe = write(tmp_path / "r.yaml", "model:\n  encoder: {name: toy_encoder\ntrainer: {}\n")
    result = run_w2vrun(recipe, "--dry-run")
    assert_clean_user_error(result, "YAML syntax error", f"{recipe}:")


def test_malformed_override_subprocess(run_w2vrun, toy_entry_point, toy_recipe):
    result = run_w2vrun(toy_recipe, "model.aggregator.layers", "--dry-run",
                        pythonpath=toy_entry_point)
    assert_clean_user_error(result, "command line", "malformed override", "key.path=value")


def test_dry_run_subprocess_succeeds(run_w2vrun, toy_entry_point, toy_recipe, tmp_path):
    result = run_w2vrun(toy_recipe, "--dry-run", pythonpath=toy_entry_point, cwd=tmp_path)
    assert result.code == 0, result.err
    assert "total model parameters" in result.out
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


# =========================================================== in-process: recipe errors
@pytest.fixture
def dry(run_cli, toy_plugins, tmp_path):
    """Write a toy recipe variant and dry-run it in-process."""

    def run(text: str = TOY_RECIPE, *overrides: str):
        recipe = write(tmp_path / "r.yaml", text)
        return recipe, run_cli(recipe, *overrides, "--dry-run")

    return run


def test_unknown_component_lists_names_and_providers(dry):
    recipe, result = dry(TOY_RECIPE.replace("name: toy_aggregator", "name: toy_agregator"))
    assert_clean_user_error(result, f"{recipe}:8", "`model.aggregator.name`",
                            "Did you mean `toy_aggregator`?", "Provided by:",
                            "`toy_aggregator` from toy")


def test_unknown_key_names_nearest_key(dry):
    recipe, result = dry(TOY_RECIPE.replace("weight: 1.0", "wieght: 1.0"))
    assert_clean_user_error(result, f"{recipe}:9", "`objective.wieght`", "Did you mean `weight`?")


def test_wrong_type_for_bool(dry):
    recipe, result = dry(TOY_RECIPE.replace("layers: 2,", "layers: 2, causal: 'yes',"))
    assert_clean_user_error(result, f"{recipe}:8", "`model.aggregator.causal`", "true or false")


def test_invalid_choice_names_nearest(dry):
    recipe, result = dry(TOY_RECIPE.replace("mode: hard", "mode: hart"))
    assert_clean_user_error(result, f"{recipe}:7", "`model.quantizer.mode`",
                            "Did you mean `hard`?")


def test_out_of_range_size(dry):
    recipe, result = dry(TOY_RECIPE.replace("layers: 2", "layers: 1000000"))
    assert_clean_user_error(result, f"{recipe}:8", "`model.aggregator.layers`", "1000000")


def test_missing_required_key(dry):
    text = TOY_RECIPE.replace("layers: 2, dim: 16}",
                              "layers: 2, dim: 16, block: {name: toy_scale}}")
    recipe, result = dry(text)
    assert_clean_user_error(result, f"{recipe}:8", "`model.aggregator.block.factor`",
                            "required key is missing", "initial scale")


def test_cross_field_check(dry):
    recipe, result = dry(TOY_RECIPE.replace("groups: 2", "temp: [0.1, 1.0, 0.9]"))
    assert_clean_user_error(result, f"{recipe}:5", "`model.quantizer.temp`", "max temperature")


def test_error_from_an_override_names_the_command_line(dry):
    _, result = dry(TOY_RECIPE, "model.encoder.stride=-1")
    assert_clean_user_error(result, "command line (`model.encoder.stride=-1`)",
                            "`model.encoder.stride`", "between 1 and 1000")


def test_unknown_top_level_section_in_override(dry):
    _, result = dry(TOY_RECIPE, "trainr.lr=1")
    assert_clean_user_error(result, "unknown top-level section", "Did you mean `trainer`?")


def test_base_cycle(run_cli, toy_plugins, tmp_path):
    a = write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    assert_clean_user_error(run_cli(a, "--dry-run"), "cycle", "a.yaml", "b.yaml", "`base`")


def test_yaml_syntax_error_in_process(run_cli, tmp_path):
    recipe = write(tmp_path / "r.yaml", "trainer:\n  lr: [1, 2\n")
    assert_clean_user_error(run_cli(recipe, "--dry-run"), "YAML syntax error", f"{recipe}:")


def test_duplicate_key(run_cli, tmp_path):
    recipe = write(tmp_path / "r.yaml", "trainer: {}\ntrainer: {}\n")
    assert_clean_user_error(run_cli(recipe, "--dry-run"), f"{recipe}:2", "duplicate key")


def test_missing_recipe_file(run_cli, tmp_path):
    assert_clean_user_error(run_cli(tmp_path / "nope.yaml"), "nope.yaml", "does not exist")


def test_components_that_do_not_fit(dry):
    # vq-wav2vec style wiring (quantized features feed the aggregator) without a quantizer
    text = TOY_RECIPE.replace("aggregator: {", "quantize: input\n  aggregator: {")
    text = text[:text.index("  quantizer:")] + text[text.index("  quantize: input"):]
    recipe, result = dry(text)
    assert_clean_user_error(result, "`model.quantize`", "needs a quantizer")


def test_objective_that_does_not_fit_the_model_names_both(dry):
    recipe, result = dry(TOY_RECIPE.replace("weight: 1.0", "weight: 1.0, needs_causal: true"))
    assert_clean_user_error(result, f"{recipe}:9", "`objective`", "toy_objective",
                            "bidirectional")


def test_model_without_encoder_is_a_fit_error(toy_plugins):
    from w2v.build import ModelConfig, build_model
    from w2v.config.structure import structure
    from w2v.errors import FitError

    cfg = structure({"aggregator": {"name": "toy_aggregator"}}, ModelConfig, path=("model",))
    with pytest.raises(FitError) as info:
        build_model(cfg)
    assert info.value.key == "model.encoder" and "w2vrun list encoder" in info.value.hint


def test_dry_run_rejects_a_model_without_encoder(dry):
    text = TOY_RECIPE.replace("  encoder: {name: toy_encoder, dim: 8, stride: 4}\n", "")
    _, result = dry(text)
    assert_clean_user_error(result, "`model.encoder`", "no encoder")


# =========================================================== in-process: commands
def test_dry_run_prints_resolved_recipe_and_parameter_counts(dry, tmp_path, monkeypatch):
    import toy_plugin

    monkeypatch.chdir(tmp_path)
    _, result = dry(TOY_RECIPE, "model.quantizer.num_vars=6")
    assert result.code == 0, result.err
    resolved_text, _, summary = result.out.partition("\n\nstage `main` (toy_stage):\n")
    resolved = yaml.safe_load(resolved_text)
    stage = resolved["stages"]["main"]
    assert stage["name"] == "toy_stage" and stage["message"] == "hello"
    assert stage["model"]["quantizer"]["num_vars"] == 6          # the override
    assert stage["model"]["quantizer"]["temp"] == [2.0, 0.5, 0.999995]  # a default filled in
    assert stage["model"]["aggregator"]["layers"] == 2
    assert stage["objective"] == {"name": "toy_objective", "weight": 1.0, "needs_causal": False}
    # parameter counts match the components built independently
    enc = toy_plugin.ToyEncoder(8, 4, 16000)
    quant = toy_plugin.ToyQuantizer(8, 2, 6)
    agg = toy_plugin.ToyAggregator(8, 16, 2, False)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    lines = {line.split()[0]: line for line in summary.splitlines()}
    assert f" {count(enc):,} params" in lines["encoder"]
    assert f" {count(quant):,} params" in lines["quantizer"]
    assert f" {count(agg):,} params" in lines["aggregator"]
    assert "toy_objective" in lines["objective"] and " 1 params" in lines["objective"]
    assert f"total model parameters: {count(enc) + count(quant) + count(agg):,}" in summary
    assert not (tmp_path / "runs").exists()


def test_list_all_kinds(run_cli, toy_plugins):
    result = run_cli("list")
    assert result.code == 0
    lines = result.out.splitlines()
    for kind in ("encoder:", "quantizer:", "aggregator:", "objective:", "decoder:", "stage:",
                 "toy_norm:"):
        assert kind in lines
    toy_line = next(line for line in lines if line.strip().startswith("toy_quantizer"))
    assert toy_line.rstrip().endswith("[toy]") and "Rounds features" in toy_line
    # every registered component appears under its own kind
    reg = toy_plugins.registry
    current = None
    seen = set()
    for line in lines:
        if not line.startswith(" "):
            current = line.rstrip(":")
        elif line.strip() != "(none)":
            seen.add((current, line.split()[0]))
    assert seen == {(r.kind, r.name) for r in reg.all()}


def test_list_one_kind(run_cli, toy_plugins):
    result = run_cli("list", "quantizer")
    assert result.code == 0
    names = [line.split()[0] for line in result.out.splitlines()[1:]]
    assert result.out.splitlines()[0] == "quantizer:"
    assert names == toy_plugins.registry.names("quantizer") and "toy_quantizer" in names


def test_list_unknown_kind_suggests(run_cli, toy_plugins):
    assert_clean_user_error(run_cli("list", "quantiser"), "unknown component kind `quantiser`",
                            "Did you mean `quantizer`?")


def test_show_component(run_cli, toy_plugins):
    result = run_cli("show", "quantizer", "toy_quantizer")
    assert result.code == 0
    out = result.out
    assert out.startswith("quantizer `toy_quantizer`: Rounds features")
    assert "toy_plugin.ToyQuantizer" in out and "plugin toy" in out
    for name, default, help_ in [("groups", "2", "groups"), ("num_vars", "4", "entries per group"),
                                 ("temp", "(2.0, 0.5, 0.999995)", "(max, min, decay)"),
                                 ("mode", "'hard'", "straight-through or soft"),
                                 ("inner", "null", "an optional nested component")]:
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{name}:"))
        assert line.rstrip().endswith(f"= {default}"), line
        assert help_ in out


def test_show_required_field(run_cli, toy_plugins):
    result = run_cli("show", "toy_norm", "toy_scale")
    assert result.code == 0
    assert any(line.strip().startswith("factor:") and line.rstrip().endswith("(required)")
               for line in result.out.splitlines())


def test_show_lists_the_choices_of_a_literal_field(run_cli, toy_plugins):
    out = run_cli("show", "quantizer", "toy_quantizer").out
    mode = next(line for line in out.splitlines() if line.strip().startswith("mode:"))
    assert "'soft'" in mode
    temp = next(line for line in out.splitlines() if line.strip().startswith("temp:"))
    assert "float" in temp


def test_show_unknown_component(run_cli, toy_plugins):
    assert_clean_user_error(run_cli("show", "quantizer", "toy_quantiser"),
                            "Did you mean `toy_quantizer`?", "from toy")


def test_show_needs_two_arguments(run_cli, toy_plugins):
    assert_clean_user_error(run_cli("show", "quantizer"), "w2vrun show", "--help")


def test_plugins_command_lists_plugins_and_what_they_provide(run_cli, toy_plugins):
    result = run_cli("plugins")
    assert result.code == 0
    lines = result.out.splitlines()
    toy_line = next(i for i, line in enumerate(lines) if line.startswith("toy "))
    assert "loaded" in lines[toy_line] and "(toy_plugin)" in lines[toy_line]
    provided = " ".join(lines[toy_line + 1:toy_line + 4])
    assert "quantizer:toy_quantizer" in provided and "stage:toy_stage" in provided
    for status in toy_plugins.statuses:
        assert any(line.startswith(status.info.name + " ") for line in lines)


def test_unknown_command_suggests(run_cli, toy_plugins):
    assert_clean_user_error(run_cli("lst"), "`lst` is neither a recipe file nor a command",
                            "Did you mean `list`?")


def test_bad_option(run_cli, toy_recipe):
    assert_clean_user_error(run_cli(toy_recipe, "--dryrun"), "unrecognized arguments")


def test_bad_option_message_names_the_program_once(run_cli, toy_recipe):
    assert "w2vrun w2vrun" not in run_cli(toy_recipe, "--dryrun").err


def test_help_exits_0_and_no_arguments_exits_2(run_cli):
    assert run_cli("--help").code == 0
    result = run_cli()
    assert result.code == 2 and "usage: w2vrun" in result.out


def test_unknown_stage_in_stages_option(run_cli, toy_plugins, toy_recipe, tmp_path):
    assert_clean_user_error(run_cli(toy_recipe, "--out", tmp_path / "run", "--stages", "mian"),
                            "unknown stage `mian`", "Did you mean `main`?")


def test_recipe_run_writes_run_directory(run_cli, toy_plugins, toy_recipe, tmp_path):
    out = tmp_path / "run"
    result = run_cli(toy_recipe, "stages.main.message=bye", "--out", out)
    assert result.code == 0, result.err
    assert (out / "main" / "toy.txt").read_text() == "bye"
    assert (out / "main" / "DONE").exists()
    resolved = yaml.safe_load((out / "resolved.yaml").read_text())
    assert resolved["stages"]["main"]["message"] == "bye"


def test_overrides_may_follow_options(run_cli, toy_plugins, toy_recipe, tmp_path):
    out = tmp_path / "run"
    result = run_cli(toy_recipe, "--out", out, "stages.main.message=bye")
    assert result.code == 0, result.err
    assert (out / "main" / "toy.txt").read_text() == "bye"


# =========================================================== plugin problems
def make_plugin(name: str, register, api: str = "2.0", **hooks) -> types.ModuleType:
    """A plugin module object whose ``w2v_register_components`` calls ``register(registrar)``."""
    module = types.ModuleType(name)
    module.W2V_PLUGIN_API = api
    if register is not None:
        module.w2v_register_components = hookimpl(lambda registrar: register(registrar))
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


def register_toy_quantizer_copy(registrar):
    import toy_plugin

    registrar.add_component("quantizer", "toy_quantizer", toy_plugin.ToyQuantizer, smoke={})


def test_duplicate_registration_names_both_modules():
    from core_testkit import load_with_toy

    other = make_plugin("other_vendor_plugin", register_toy_quantizer_copy)
    with pytest.raises(ConfigError) as info:
        load_with_toy(("other", other))
    text = info.value.render()
    assert "Two plugins register the quantizer `toy_quantizer`" in text
    assert "toy_plugin" in text and "other_vendor_plugin" in text
    assert "W2V_DISABLE_PLUGINS" in text


@pytest.mark.parametrize("what, register", [
    ("corpus `demo`", lambda r: r.add_corpus("demo", lambda split: split)),
    ("command `w2vrun manifest`", lambda r: r.add_command("manifest", lambda p: None,
                                                          lambda args: 0)),
    ("checkpoint format `fairseq_wav2vec2`", lambda r: r.add_importer(
        "fairseq_wav2vec2", lambda path: False, lambda path, **kw: None)),
])
def test_duplicate_corpus_command_or_format_names_both_plugins(what, register):
    from core_testkit import load_with_toy

    with pytest.raises(ConfigError) as info:
        load_with_toy(("other", make_plugin("other_vendor_plugin", register)))
    text = info.value.render()
    assert f"Two plugins register the {what}" in text
    assert "other_vendor_plugin" in text and "W2V_DISABLE_PLUGINS" in text


def test_plugins_command_lists_corpora(run_cli, toy_plugins):
    lines = run_cli("plugins").out.splitlines()
    demo = next(i for i, line in enumerate(lines) if line.startswith("demo "))
    assert "corpus:demo," in " ".join(lines[demo + 1:demo + 4]) + ","


def test_duplicate_registration_through_entry_points(run_cli, tmp_path, monkeypatch):
    site = make_entry_point_dist(tmp_path / "site", "dup-plugins", {
        "dup_a": "dup_a_plugin", "dup_b": "dup_b_plugin"}, modules={
        f"dup_{x}_plugin.py": f"""\
            import attrs
            from w2v import hookimpl
            from w2v.config import size
            from w2v.interfaces import Aggregator

            W2V_PLUGIN_API = "2.0"

            class Agg{x.upper()}(Aggregator):
                '''Aggregator {x}.'''

                @attrs.define(kw_only=True)
                class Config:
                    layers: int = size(1, 1, 4, "layers")

            @hookimpl
            def w2v_register_components(registrar):
                registrar.add_component("aggregator", "dup_agg", Agg{x.upper()})
            """ for x in "ab"})
    monkeypatch.syspath_prepend(str(site))
    plugin_manager.reset(None)
    result = run_cli("list")
    assert_clean_user_error(result, "Two plugins register the aggregator `dup_agg`",
                            "dup_a_plugin.AggA", "dup_b_plugin.AggB")
    # and the way out the message suggests works
    monkeypatch.setenv("W2V_DISABLE_PLUGINS", "dup_b")
    plugin_manager.reset(None)
    result = run_cli("list", "aggregator")
    assert result.code == 0 and "dup_agg" in result.out and "[dup_a]" in result.out


def test_plugin_whose_hook_raises_is_reported_and_others_keep_working(run_cli):
    from core_testkit import load_with_toy

    def explode(registrar):
        raise RuntimeError("libfoo.so: cannot open shared object file")

    broken = make_plugin("broken_plugin", explode)
    plugin_set = load_with_toy(("broken", broken))
    status = next(s for s in plugin_set.statuses if s.info.name == "broken")
    assert not status.loaded and "RuntimeError: libfoo.so" in status.error
    plugin_manager.reset(plugin_set)
    result = run_cli("plugins")
    assert result.code == 0
    lines = result.out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("broken "))
    assert "FAILED" in lines[i] and "RuntimeError: libfoo.so" in lines[i + 1]
    assert any(line.startswith("toy ") and "loaded" in line for line in lines)
    assert run_cli("show", "quantizer", "toy_quantizer").code == 0


def test_failed_plugin_leaves_no_half_registration():
    from core_testkit import load_with_toy

    def half(registrar):
        import toy_plugin

        registrar.add_component("encoder", "half_encoder", toy_plugin.ToyEncoder, smoke={})
        raise RuntimeError("second half failed")

    plugin_set = load_with_toy(("half", make_plugin("half_plugin", half)))
    assert not next(s for s in plugin_set.statuses if s.info.name == "half").loaded
    assert "half_encoder" not in plugin_set.registry.names("encoder")


def test_plugin_that_fails_to_import_is_reported(run_w2vrun, toy_entry_point, tmp_path):
    site = make_entry_point_dist(tmp_path / "site2", "w2v-broken", {"broken": "broken_w2v_plugin"},
                                 modules={"broken_w2v_plugin.py": """\
                                     import not_a_real_dependency_xyz
                                     W2V_PLUGIN_API = "2.0"
                                     """})
    result = run_w2vrun("plugins", pythonpath=[site, *toy_entry_point])
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    lines = result.out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("broken "))
    assert "FAILED" in lines[i] and "w2v-broken" in lines[i]
    assert "ModuleNotFoundError" in lines[i + 1] and "not_a_real_dependency_xyz" in lines[i + 1]
    assert any(line.startswith("toy ") and "loaded" in line for line in lines)
    # the other plugins keep working
    listed = run_w2vrun("list", "quantizer", pythonpath=[site, *toy_entry_point])
    assert listed.code == 0 and "toy_quantizer" in listed.out


def test_plugin_without_api_version_is_refused():
    from core_testkit import load_with_toy

    module = make_plugin("unversioned_plugin", register_toy_quantizer_copy)
    del module.W2V_PLUGIN_API
    plugin_set = load_with_toy(("unversioned", module))
    status = next(s for s in plugin_set.statuses if s.info.name == "unversioned")
    assert not status.loaded and "W2V_PLUGIN_API" in status.error
