"""``w2vrun evaluate``: the WER/CER table, per-utterance errors and results.json in a run
directory, the same numbers and files as the ``evaluate`` stage, the LM-text leakage check, and
user errors (exit 2, one paragraph naming the file, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_testkit import run_w2vrun_process
from ctc_fixtures import SPOKEN, assert_clean_user_error, words

HAS_FLASHLIGHT = True
try:
    import flashlight.lib.text  # noqa: F401
except ImportError:
    HAS_FLASHLIGHT = False

BEAM = ["--lm-text", "{lm_text}", "--beam", "8"] if HAS_FLASHLIGHT else []


def lm_args(ctc_run) -> list[str]:
    return [a.format(lm_text=ctc_run.lm_text) for a in BEAM]


def read_tsv(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_evaluate_command_prints_the_table_and_writes_per_utterance_errors(ctc_run, tmp_path):
    out = tmp_path / "eval"
    result = run_w2vrun_process("evaluate", ctc_run.checkpoint, ctc_run.manifest, "--out", out,
                                "--device", "cpu", *lm_args(ctc_run))
    assert result.code == 0, result.err
    table = [line for line in result.out.splitlines() if line.startswith("|")]
    decoders = ["greedy", "lm"] if HAS_FLASHLIGHT else ["greedy"]
    assert table[0] == "| decoder | CER % | WER % | utterances |"
    assert [row.split("|")[1].split()[0] for row in table[2:]] == decoders
    assert all(row.split("|")[2:5] == [" 0.00 ", " 0.00 ", " 3 "] for row in table[2:])
    for name in decoders:
        rows = read_tsv(out / f"test.{name}.tsv")
        assert rows[0] == ["utterance", "word_errors", "words", "char_errors", "chars",
                           "reference", "hypothesis"]
        assert [r[0] for r in rows[1:]] == list(SPOKEN)            # manifest paths as ids
        assert [r[5] for r in rows[1:]] == [r[6] for r in rows[1:]] == \
            [words(t) for t in SPOKEN.values()]
    results = json.loads((out / "results.json").read_text())
    assert [(r["decoder"], r["split"], r["wer"]) for r in results["results"]] == \
        [(d, "test", 0.0) for d in decoders]
    if HAS_FLASHLIGHT:
        [lm] = results["lm"].values()
        assert lm["words"] == 5 and lm["oov_rate"] == 0.0 and (out / "lm.arpa").exists()


def test_errors_are_counted_per_utterance_and_runs_accumulate(ctc_run, run_cli, tmp_path):
    wrong = tmp_path / "wrong.tsv"
    wrong.write_text(ctc_run.manifest.read_text())
    labels = list(SPOKEN.values())
    labels[1] = "T E N |"                                   # two.wav says NOTE
    wrong.with_suffix(".ltr").write_text("\n".join(labels) + "\n")
    out = tmp_path / "eval"
    assert run_cli("evaluate", ctc_run.checkpoint, ctc_run.manifest, "--out", out,
                   "--device", "cpu").code == 0
    result = run_cli("evaluate", ctc_run.checkpoint, wrong, "--out", out, "--device", "cpu")
    assert result.code == 0, result.err
    # TEN -> NOTE: 3 of the 16 characters (spaces included), 1 of the 5 words
    assert "| greedy | 18.75 | 20.00 | 3 |" in result.out
    rows = read_tsv(out / "wrong.greedy.tsv")
    assert rows[2] == ["two.wav", "1", "1", "3", "3", "TEN", "NOTE"]
    assert all(r[1] == "0" for r in (rows[1], rows[3]))
    results = json.loads((out / "results.json").read_text())
    assert sorted((r["split"], r["wer"]) for r in results["results"]) == \
        [("test", 0.0), ("wrong", 0.2)]


def test_command_and_evaluate_stage_give_the_same_results(ctc_run, run_cli, tmp_path):
    decoders = "{greedy: {name: ctc_greedy}" + (
        ", lm: {name: ctc_beam, lm: auto, lexicon: auto, beam: 8}}" if HAS_FLASHLIGHT else "}")
    recipe = tmp_path / "evaluate.yaml"
    recipe.write_text(
        f"data: {{test: {ctc_run.manifest}, labels: ltr, pad: true}}\n"
        "stages:\n"
        "  evaluate:\n"
        "    name: evaluate\n"
        f"    models: [{ctc_run.checkpoint}]\n"
        + (f"    lm_text: {ctc_run.lm_text}\n" if HAS_FLASHLIGHT else "")
        + f"    decoders: {decoders}\n")
    assert run_cli(recipe, "--out", tmp_path / "run").code == 0
    assert run_cli("evaluate", ctc_run.checkpoint, ctc_run.manifest, "--out", tmp_path / "cmd",
                   "--device", "cpu", *lm_args(ctc_run)).code == 0
    stage = json.loads((tmp_path / "run" / "evaluate" / "results.json").read_text())
    command = json.loads((tmp_path / "cmd" / "results.json").read_text())
    assert [(r["decoder"], r["cer"], r["wer"]) for r in stage["results"]] == \
        [(r["decoder"], r["cer"], r["wer"]) for r in command["results"]]
    for row, mine in zip(stage["results"], command["results"]):
        assert (tmp_path / "run" / "evaluate" / row["errors_file"]).read_text() == \
            (tmp_path / "cmd" / mine["errors_file"]).read_text()
    if HAS_FLASHLIGHT:
        assert stage["lm"]["oov_rate"] == 0.0     # .ltr-only labels are checked against the LM


def test_lm_text_with_an_evaluated_sentence_is_refused(ctc_run, tmp_path):
    pytest.importorskip("flashlight.lib.text")
    leaky = tmp_path / "leaky.txt"
    leaky.write_text(ctc_run.lm_text.read_text() + "EAT ON\n")
    result = run_w2vrun_process("evaluate", ctc_run.checkpoint, ctc_run.manifest, "--out",
                                tmp_path / "eval", "--lm-text", leaky, "--device", "cpu")
    assert_clean_user_error(result, "EAT ON", "LM text")


@pytest.mark.parametrize("case", ["missing checkpoint", "no ctc head", "missing manifest",
                                  "malformed manifest", "missing labels", "labels off by one",
                                  "symbol not in the dictionary"])
def test_evaluate_user_errors_exit_2_naming_the_file(ctc_run, tmp_path, case):
    bad = tmp_path / "bad.tsv"
    manifest = ctc_run.manifest
    if case == "malformed manifest":
        bad.write_text(f"{ctc_run.root / 'audio'}\none.wav 5000\n")     # a space, not a tab
        bad.with_suffix(".ltr").write_text("T E N |\n")
        manifest = bad
    elif case == "missing labels":
        bad.write_text(ctc_run.manifest.read_text())
        manifest = bad
    elif case == "labels off by one":
        bad.write_text(ctc_run.manifest.read_text())
        bad.with_suffix(".ltr").write_text("T E N |\n")
        manifest = bad
    elif case == "symbol not in the dictionary":
        bad.write_text(ctc_run.manifest.read_text())
        bad.with_suffix(".ltr").write_text("T E N |\nN O T E Z |\nA |\n")
        manifest = bad
    checkpoint = {"missing checkpoint": tmp_path / "nope",
                  "no ctc head": ctc_run.pretrained}.get(case, ctc_run.checkpoint)
    if case == "missing manifest":
        manifest = tmp_path / "nope.tsv"
    named = {
        "missing checkpoint": [f"`{checkpoint}`", "does not exist"],
        "no ctc head": [f"`{checkpoint}`", "no CTC head", "Fine-tune it"],
        "missing manifest": [f"`{manifest}`", "does not exist", "w2vrun manifest"],
        "malformed manifest": [f"{manifest}:2", "tab-separated"],
        "missing labels": [f"`{bad.with_suffix('.ltr')}`", "w2vrun labels"],
        "labels off by one": [f"`{bad.with_suffix('.ltr')}`", "1 lines", "3 utterances"],
        "symbol not in the dictionary": [f"{bad.with_suffix('.ltr')}:2", "`Z`",
                                         f"Fix or remove that line of `{bad}`"],
    }[case]
    result = run_w2vrun_process("evaluate", checkpoint, manifest, "--out", tmp_path / "eval",
                                "--device", "cpu")
    assert_clean_user_error(result, *named)


# --------------------------------------------------------------------------- corpus references


def corpus_plugin(splits: dict):
    """A plugin providing the corpus `toy` (`toy:test`, `toy:lm`), as the demo plugin provides
    `demo:`; resolving a split counts as building it."""
    import types

    from w2v import hookimpl
    from w2v.registry import PLUGIN_API_VERSION

    module = types.ModuleType("toy_corpus_plugin")
    module.W2V_PLUGIN_API = ".".join(map(str, PLUGIN_API_VERSION))
    module.w2v_register_components = hookimpl(
        lambda registrar: registrar.add_corpus("toy", lambda split: splits[split]))
    return module


@pytest.fixture
def toy_corpus(ctc_run):
    from w2v import plugin_manager

    plugin_manager.reset(plugin_manager.load_plugins(
        [("toy_corpus", corpus_plugin({"test": ctc_run.manifest, "lm": ctc_run.lm_text}))]))


def test_evaluate_and_transcribe_take_corpus_splits_like_recipes(ctc_run, toy_corpus, run_cli,
                                                                 tmp_path):
    by_path = run_cli("evaluate", ctc_run.checkpoint, ctc_run.manifest, "--out",
                      tmp_path / "a", "--device", "cpu", *lm_args(ctc_run))
    lm = ["--lm-text", "toy:lm", "--beam", "8"] if HAS_FLASHLIGHT else []
    by_corpus = run_cli("evaluate", ctc_run.checkpoint, "toy:test", "--out", tmp_path / "b",
                        "--device", "cpu", *lm)
    assert by_corpus.code == 0, by_corpus.err
    table = lambda r: [line for line in r.out.splitlines() if line.startswith("|")]  # noqa: E731
    assert table(by_corpus) == table(by_path) and len(table(by_path)) == (4 if lm else 3)
    assert (tmp_path / "b" / "test.greedy.tsv").read_text() == \
        (tmp_path / "a" / "test.greedy.tsv").read_text()

    result = run_cli("transcribe", ctc_run.checkpoint, "toy:test", "--device", "cpu")
    assert result.code == 0, result.err
    assert [line.split("\t")[1] for line in result.out.splitlines()] == \
        [words(t) for t in SPOKEN.values()]


def test_an_unknown_corpus_is_a_clean_error(ctc_run, toy_corpus, run_cli, tmp_path):
    result = run_cli("evaluate", ctc_run.checkpoint, "tyo:test", "--device", "cpu")
    assert result.code == 2 and "Traceback" not in result.err
    assert "`tyo`" in result.err and "Did you mean `toy`?" in result.err
    assert "w2vrun evaluate" in result.err


# --------------------------------------------------------------------------- LM weights


def test_one_default_lm_weight_and_word_score_for_recipes_and_commands():
    """`w2vrun evaluate`/`transcribe` default to the ctc_beam decoder's own defaults, and the
    demo's evaluate stage sets neither, so both decode the demo model the same way."""
    import argparse

    import yaml

    from w2v.plugins.ctc.commands import configure_evaluate, configure_transcribe
    from w2v.plugins.ctc.decoders import BeamConfig

    beam = BeamConfig()
    for configure in (configure_evaluate, configure_transcribe):
        parser = argparse.ArgumentParser()
        configure(parser)
        args = parser.parse_args(["ckpt", "x.tsv"])
        assert (args.lm_weight, args.word_score, args.beam) == \
            (beam.lm_weight, beam.word_score, beam.beam)
    demo = yaml.safe_load((Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml")
                          .read_text())
    for decoder in demo["stages"]["evaluate"]["decoders"].values():
        assert "lm_weight" not in decoder and "word_score" not in decoder, decoder


def test_every_lm_row_names_its_weights(ctc_run, run_cli, tmp_path):
    pytest.importorskip("flashlight.lib.text")
    result = run_cli("evaluate", ctc_run.checkpoint, ctc_run.manifest, "--out", tmp_path / "e",
                     "--device", "cpu", "--lm-text", ctc_run.lm_text, "--beam", "8",
                     "--lm-weight", "1.5", "--word-score", "-0.5")
    assert result.code == 0, result.err
    rows = {line.split("|")[1].strip() for line in result.out.splitlines()
            if line.startswith("| ") and "CER" not in line and "---" not in line}
    assert rows == {"greedy", "lm (lm_weight 1.5, word_score -0.5)"}
    results = json.loads((tmp_path / "e" / "results.json").read_text())["results"]
    lm_row = next(r for r in results if r["decoder"] == "lm")
    assert (lm_row["lm_weight"], lm_row["word_score"]) == (1.5, -0.5)
    assert "lm_weight" not in next(r for r in results if r["decoder"] == "greedy")

    # the evaluate stage's rows, and the report's table over them, say the same
    from w2v.plugins.stages.report import format_table

    recipe = tmp_path / "evaluate.yaml"
    recipe.write_text(
        f"data: {{test: {ctc_run.manifest}, labels: ltr, pad: true}}\n"
        "stages:\n  evaluate:\n    name: evaluate\n"
        f"    models: [{ctc_run.checkpoint}]\n    lm_text: {ctc_run.lm_text}\n"
        "    decoders: {lm: {name: ctc_beam, lm: auto, lexicon: auto, beam: 8}}\n")
    assert run_cli(recipe, "--out", tmp_path / "run").code == 0
    stage = json.loads((tmp_path / "run" / "evaluate" / "results.json").read_text())
    [row] = stage["results"]
    assert (row["lm_weight"], row["word_score"]) == (2.0, -1.0)
    assert "| lm (lm_weight 2, word_score -1) |" in format_table(
        [{**row, "split": stage["split"]}])
