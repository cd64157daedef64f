"""`w2vrun benchmark MODEL` at tiny size on a tiny demo corpus, and its parts.

The corpus is the real demo corpus built small in a temporary cache (W2V_CACHE and
W2V_DEMO_*, as tests/demo_pipeline does); the models are a random-init two-block
Transformer over log-mel (`random:RECIPE`) and the log-mel front end itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

TINY_RECIPE = """\
model:
  encoder: {name: logmel, num_mel_bins: 20, frame_shift_ms: 20.0}
  aggregator: {name: transformer, embed_dim: 16, layers: 2, ffn_dim: 32, heads: 2, conv_pos: 4,
               conv_pos_groups: 2}
"""
TINY = ["--updates", "3", "--units", "4", "--kmeans-frames", "400", "--lstm-dim", "8",
        "--device", "cpu"]
# 1.2 labelled minutes: enough train utterances that some speakers repeat (the speaker task
# needs two speakers with two utterances each) even when espeak-ng, with its many voice
# variants, is the only engine installed.
CORPUS_ENV = {"W2V_DEMO_MINUTES": "0.5", "W2V_DEMO_LABELED_MINUTES": "1.2",
              "W2V_DEMO_SEED": "3"}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """The demo corpus at 1.2 labelled minutes in a temporary cache, for the module."""
    tmp = tmp_path_factory.mktemp("corpus")
    env = {"W2V_CACHE": str(tmp / "cache"), **CORPUS_ENV}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from w2v.plugins.demo import resolve_demo

    resolve_demo("train")
    yield tmp
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


@pytest.fixture(scope="module")
def random_run(tiny_corpus, recipe):
    """The whole benchmark of a random-init architecture, merged into a docs page."""
    from w2v import cli, plugin_manager

    plugin_manager.reset()
    out = tiny_corpus / "random"
    page = tiny_corpus / "docs" / "downstream.md"
    page.parent.mkdir()
    page.write_text("# Downstream\n\nProse written by hand stays.\n")
    code = cli.main(["benchmark", f"random:{recipe}", "--out", str(out), "--docs", str(page),
                     *TINY])
    assert code == 0
    return out, page


def _record(out: Path) -> dict:
    return json.loads((out / "benchmark.json").read_text())


def test_random_model_benchmark_writes_table_json_and_plot(random_run):
    out, _ = random_run
    record = _record(out)
    assert record["layers"] == ["input", "0", "1"] and record["layer"] == "1"
    tasks = record["tasks"]
    assert set(tasks) == {"letters", "phones", "speaker", "pnmi"}
    for probe in ("weighted", "layer"):
        assert 0 <= tasks["letters"][probe]["test"]["cer"] <= 1000
        assert 0 <= tasks["letters"][probe]["test"]["wer"]
        assert 0 <= tasks["phones"][probe]["test"]["per"]
        assert 0 <= tasks["speaker"][probe]["test"]["accuracy"] <= 100
        assert 0 <= tasks["pnmi"][probe]["pnmi"] <= 1
    assert tasks["speaker"]["speakers"] >= 2 and tasks["speaker"]["test_utterances"] >= 2
    assert 0 < tasks["speaker"]["majority"] < 100
    assert len(tasks["pnmi"]["per_layer"]) == 3
    assert tasks["letters"]["budget"] == {"updates": 3, "lr": 5e-3, "batch_seconds": 20.0}
    assert record["command"].startswith(f"w2vrun benchmark random:")
    assert "--updates 3" in record["command"]
    table = (out / "benchmark.md").read_text()
    assert "| random tiny | weighted (3 layers) |" in table
    assert "| random tiny | layer `1` |" in table
    assert (out / "layers.png").read_bytes()[:4] == b"\x89PNG"
    # every probe really trained with the trainer for its budget
    lines = (out / "probes" / "letters-weighted" / "metrics.jsonl").read_text().splitlines()
    assert max(json.loads(l).get("step", 0) for l in lines) == 3


def test_weighted_probe_weights_are_a_softmax_over_all_layers(random_run):
    out, _ = random_run
    tasks = _record(out)["tasks"]
    for task in ("letters", "phones", "speaker"):
        weights = tasks[task]["weighted"]["weights"]
        assert len(weights) == 3 and all(w > 0 for w in weights)
        assert sum(weights) == pytest.approx(1.0, abs=1e-6)
        assert tasks[task]["layer"]["weights"] == [1.0]
    assert sum(tasks["pnmi"]["weighted"]["weights"]) == pytest.approx(1.0, abs=1e-6)


def test_logmel_benchmark_and_docs_merge_keep_every_model(random_run, tiny_corpus):
    from w2v import cli

    _, page = random_run
    out = tiny_corpus / "logmel"
    assert cli.main(["benchmark", "logmel", "--out", str(out), "--docs", str(page),
                     "--tasks", "letters,pnmi", *TINY]) == 0
    record = _record(out)
    assert record["layers"] == ["encoder"]
    fifty = tiny_corpus / "logmel50"
    assert cli.main(["benchmark", "logmel:frame_shift_ms=20", "--out", str(fifty),
                     "--tasks", "pnmi", *TINY]) == 0     # front-end options: half the frames
    frames = (record["tasks"]["pnmi"]["frames"], _record(fifty)["tasks"]["pnmi"]["frames"])
    # PNMI scores the valid + test frames; per utterance, the 10 ms count is twice the 20 ms
    # count or one less
    from w2v.plugins.demo import resolve_demo

    held_out = sum(len(Path(resolve_demo(split)).read_text().splitlines()) - 1
                   for split in ("valid", "test"))                  # a tsv's first line: root
    assert 0 <= 2 * frames[1] - frames[0] <= held_out
    letters = record["tasks"]["letters"]
    assert letters["layer"] == letters["weighted"]     # one layer: one probe
    assert set(record["tasks"]) == {"letters", "pnmi"}
    text = page.read_text()
    assert text.startswith("# Downstream\n\nProse written by hand stays.\n")
    assert "| random tiny | weighted (3 layers) |" in text
    assert "| logmel | its one layer (`encoder`) |" in text
    assert (page.parent / "img" / "downstream-logmel.png").exists()
    # running a model again replaces its rows
    assert cli.main(["benchmark", "logmel", "--out", str(out), "--docs", str(page),
                     "--tasks", "pnmi", *TINY]) == 0
    again = page.read_text()
    assert again.count("| logmel | its one layer") == 1 and again.count("| random tiny |") == 2
    stored = json.loads(page.with_suffix(".json").read_text())["models"]
    assert set(stored) == {"random tiny", "logmel"}
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
    from doc_blocks import bash_blocks

    assert all(b.not_run for b in bash_blocks(page))    # commands shown, not run by the docs test


def test_user_mistakes_exit_2_with_a_message(tiny_corpus, recipe, run_cli):
    result = run_cli("benchmark", "logmell", "--out", tiny_corpus / "x")
    assert result.code == 2 and "Did you mean `logmel`" in result.err
    result = run_cli("benchmark", "logmel", "--tasks", "letters,speakers")
    assert result.code == 2 and "Did you mean `speaker`" in result.err
    result = run_cli("benchmark", "logmel:frame_shift=20", "--out", tiny_corpus / "x")
    assert result.code == 2 and "frame_shift_ms" in result.err
    result = run_cli("benchmark", f"random:{recipe}", "--layer", "5", "--tasks", "pnmi",
                     "--out", tiny_corpus / "y", *TINY)
    assert result.code == 2 and "2 context blocks" in result.err
    assert "Traceback" not in result.err


# ------------------------------------------------------------------ parts
def test_layer_stack_is_the_projected_input_then_every_block(recipe):
    from w2v.plugins.benchmark.layers import layer_names, layer_stack
    from w2v.plugins.benchmark.models import load_model

    model = load_model(f"random:{recipe}", seed=4).model
    again = load_model(f"random:{recipe}", seed=4).model
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name                  # random:RECIPE is seeded
    wave = torch.randn(8000)
    stack = layer_stack(model, wave)
    feats = model.extract_features(wave[None])
    assert layer_names(model) == ["input", "0", "1"]
    assert stack.shape == (feats.layers[0].shape[1], 3, 16)
    assert torch.allclose(stack[:, 0], model.projection(feats.local)[0])
    for k in range(2):
        assert torch.allclose(stack[:, k + 1], feats.layers[k][0])


def test_weighted_layers_learn_to_weight_the_informative_layer():
    from w2v.interfaces import Batch
    from w2v.plugins.benchmark.probes import SpeakerObjective, SpeakerProbe

    torch.manual_seed(0)
    B, T, L, D = 64, 5, 4, 8
    labels = torch.randint(0, 3, (B,))
    x = torch.randn(B, T, L, D)
    x[:, :, 2, :3] += 3.0 * torch.nn.functional.one_hot(labels, 3)[:, None].float()
    probe, objective = SpeakerProbe(L, D, 3), SpeakerObjective()
    assert torch.allclose(probe.layers.normalized(), torch.full((L,), 0.25))
    batch = Batch(source=x, lengths=torch.full((B,), T), targets=labels[:, None])
    opt = torch.optim.Adam(probe.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        objective(batch, probe(batch)).loss.backward()
        opt.step()
    weights = probe.layers.normalized().detach()
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert weights.argmax() == 2 and weights[2] > 0.4


def test_pnmi_is_one_for_perfect_units_and_near_zero_for_random_ones():
    from w2v.plugins.benchmark.pnmi import pnmi, shuffled_pnmi

    g = torch.Generator().manual_seed(0)
    phones = torch.randint(0, 10, (20000,), generator=g)
    relabelled = (phones * 7 + 3) % 10                              # a permutation of ids
    assert pnmi(relabelled, phones) == pytest.approx(1.0, abs=1e-9)
    split = phones * 2 + torch.randint(0, 2, phones.shape, generator=g)  # each phone: 2 units
    assert pnmi(split, phones) == pytest.approx(1.0, abs=1e-9)
    random_units = torch.randint(0, 20, phones.shape, generator=g)
    assert 0 <= pnmi(random_units, phones) < 0.01
    assert pnmi(torch.zeros_like(phones), phones) == pytest.approx(0.0, abs=1e-12)
    assert shuffled_pnmi(relabelled, phones) < 0.01                 # chance of a perfect histogram
    half = torch.where(phones < 5, phones, torch.full_like(phones, 5))  # phones 5..9 merged
    assert 0.4 < pnmi(half, phones) < 0.9


def test_speaker_split_holds_out_utterances_of_every_kept_speaker():
    from w2v.plugins.benchmark.tasks import speaker_split

    names = np.array(["a"] * 10 + ["b"] * 2 + ["c"] + ["d"] * 5)
    train, test, kept = speaker_split(names, held_out=0.2, seed=1)
    assert kept == ["a", "b", "d"]                      # one utterance: cannot be in both
    assert not set(train) & set(test) and 12 not in set(train) | set(test)
    assert sorted(names[test]) == ["a", "a", "b", "d"]
    assert set(names[train]) == {"a", "b", "d"}
    again = speaker_split(names, held_out=0.2, seed=1)
    assert np.array_equal(again[1], test)
