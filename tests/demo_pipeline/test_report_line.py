"""The report's reading of the numbers (decoders named on both sides, differences in words,
notes on WER above 100 % and an LM that raised CER), its plots (a chance line on the
contrastive accuracy), and the demo's validation points."""

import json
import math
import random
from pathlib import Path

from w2v.plugins.stages.report import (cer_gap_interval, chance_accuracy, read_curves,
                                       stage_figure, summarize)

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"


def rows(**cer):
    return [{"model": m, "decoder": "greedy", "cer": c, "wer": c} for m, c in cer.items()]


def test_each_comparison_names_both_decoders_and_says_higher_or_lower_in_words():
    table = rows(base=0.40, pre=0.25, mel=0.434)
    table.append({"model": "pre", "decoder": "lm", "cer": 0.20, "wer": 0.3})
    text = summarize(table, "base", ["pre", "mel"])
    assert ("`pre` (lm decoder) against `base` (greedy decoder): CER is 20.0 points lower "
            "(better), 20.0% vs 40.0%.") in text
    assert ("`mel` (greedy decoder) against `base` (greedy decoder): CER is 3.4 points higher "
            "(worse), 43.4% vs 40.0%.") in text
    assert "none has learned" not in text and "WER is above 100 %" not in text
    assert "raised CER" not in text


def test_all_systems_near_100_percent_cer_are_called_what_they_are():
    text = summarize(rows(base=0.986, pre=0.977, mel=0.956), "base", ["pre", "mel"])
    assert "none has learned to transcribe" in text and "docs/demo-scale.md" in text


def test_wer_above_100_and_an_lm_that_raised_cer_are_explained():
    table = [{"model": "base", "decoder": "greedy", "cer": 0.56, "wer": 1.12},
             {"model": "base", "decoder": "lm", "cer": 0.61, "wer": 0.97},
             {"model": "pre", "decoder": "greedy", "cer": 0.60, "wer": 0.95},
             {"model": "pre", "decoder": "lm", "cer": 0.58, "wer": 0.90}]
    text = summarize(table, "base", ["pre"])
    assert "WER is above 100 % for `base`: WER counts substituted, deleted and inserted words" \
        in text
    assert "The word LM raised CER for `base` (lm 61.0% vs greedy 56.0%)" in text
    assert "`pre` (lm" not in text.split("raised CER for")[1]       # its LM helped
    assert "when the letters are far off" in text


def errors_file(path, char_errors, chars=50):
    lines = ["utterance\tword_errors\twords\tchar_errors\tchars\treference\thypothesis"]
    lines += [f"u{i}\t0\t10\t{e}\t{chars}\tA B\tA B" for i, e in enumerate(char_errors)]
    path.write_text("\n".join(lines) + "\n")
    return path


def scored(model, path, errors, chars=50):
    cer = sum(errors) / (chars * len(errors))
    return {"model": model, "decoder": "greedy", "cer": cer, "wer": cer, "errors_path": path}


def test_a_gap_inside_its_bootstrap_interval_is_a_tie_and_a_clear_one_a_win(tmp_path):
    rng = random.Random(0)
    base = [rng.randint(10, 40) for _ in range(40)]
    noisy = [max(0, e + rng.randint(-8, 8)) for e in base]      # same system, re-rolled
    better = [e // 2 for e in base]                              # half the errors everywhere
    table = [scored("base", errors_file(tmp_path / "b.tsv", base), base),
             scored("noisy", errors_file(tmp_path / "n.tsv", noisy), noisy),
             scored("better", errors_file(tmp_path / "g.tsv", better), better)]
    text = summarize(table, "base", ["noisy", "better"])
    noisy_line = next(line for line in text.splitlines() if line.startswith("- `noisy`"))
    better_line = next(line for line in text.splitlines() if line.startswith("- `better`"))
    assert noisy_line.endswith("includes 0: on par.")
    assert "points lower (better)" in better_line and better_line.endswith(
        "excludes 0: a real difference.")
    low, high = cer_gap_interval(tmp_path / "b.tsv", tmp_path / "g.tsv")
    gap = 100 * (table[0]["cer"] - table[2]["cer"])
    assert 0 < low < gap < high
    assert f"{-high:+.1f} to {-low:+.1f} points" in better_line   # better minus base


def test_a_clearly_worse_system_is_called_worse(tmp_path):
    base = [5] * 30
    worse = [20] * 15 + [30] * 15
    table = [scored("base", errors_file(tmp_path / "b.tsv", base), base),
             scored("worse", errors_file(tmp_path / "w.tsv", worse), worse)]
    line = summarize(table, "base", ["worse"]).splitlines()[1]
    assert "CER is 40.0 points higher (worse), 50.0% vs 10.0%" in line
    assert line.endswith("excludes 0: a real difference.")


def test_weighted_layer_probes_get_a_note_naming_the_heaviest_layer():
    table = rows(base=0.40, pre=0.30)
    table[1]["layer_weights"] = {"input": 0.1, "0": 0.6, "1": 0.3}
    text = summarize(table, "base", ["pre"])
    assert ("Learned layer weights of the weighted-layer probes (`input` is what enters the "
            "context network, then each block): `pre` (input 0.10, 0 0.60, 1 0.30; heaviest: "
            "block 0).") in text
    table[1]["layer_weights"] = {"encoder": 1.0}       # one layer: nothing to say
    assert "Learned layer weights" not in summarize(table, "base", ["pre"])


def test_the_pretraining_accuracy_plot_has_a_chance_line(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    k = 50                                         # distractors: chance is 1 / 51
    recs = [{"stage": "pretrain", "split": s, "step": u, "loss": 3.0, "accuracy": 0.1 * u / 400,
             "contrastive_chance": math.log(k + 1)} for u in (200, 400) for s in ("train", "valid")]
    recs += [{"stage": "probe", "split": "valid", "step": u, "loss": 1.0, "uer": 0.9}
             for u in (100, 200, 300)]
    metrics.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    curves = read_curves(metrics)
    assert abs(chance_accuracy(curves["pretrain"]) - 1 / (k + 1)) < 1e-9
    assert chance_accuracy(curves["probe"]) is None
    fig = stage_figure("pretrain", curves["pretrain"])
    accuracy = next(ax for ax in fig.axes if ax.get_title().startswith("accuracy"))
    chance = [line for line in accuracy.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and abs(chance[0].get_ydata()[0] - 1 / (k + 1)) < 1e-9


def test_probe_and_finetune_curves_get_more_than_two_validation_points():
    from w2v.config.recipe import load_recipe
    from w2v.stages import plan_stages

    plans = plan_stages(load_recipe(str(RECIPE)))
    trained = {sid: p for sid, p in plans.items()
               if sid.startswith("probe_") or sid == "finetune"}
    assert set(trained) == {"probe_pretrained", "probe_random", "probe_logmel", "finetune"}
    for sid, plan in trained.items():
        trainer = plan.sections.trainer
        assert trainer.valid_interval and trainer.max_updates // trainer.valid_interval > 2, sid
