"""The report's one-line reading of the numbers."""

import random

from w2v.plugins.stages.report import cer_gap_interval, summarize


def rows(**cer):
    return [{"model": m, "cer": c} for m, c in cer.items()]


def test_gap_to_the_baseline_is_stated_with_its_sign():
    line = summarize(rows(base=0.40, pre=0.25, mel=0.45), "base", ["pre", "mel"])
    assert "`pre` beats `base` by +15.0 CER points" in line
    assert "`mel` does not beat `base` by -5.0 CER points" in line
    assert "none has learned" not in line


def test_all_systems_near_100_percent_cer_are_called_what_they_are():
    line = summarize(rows(base=0.986, pre=0.977, mel=0.956), "base", ["pre", "mel"])
    assert "none has learned to transcribe" in line and "docs/demo-scale.md" in line


def errors_file(path, char_errors, chars=50):
    lines = ["utterance\tword_errors\twords\tchar_errors\tchars\treference\thypothesis"]
    lines += [f"u{i}\t0\t10\t{e}\t{chars}\tA B\tA B" for i, e in enumerate(char_errors)]
    path.write_text("\n".join(lines) + "\n")
    return path


def scored(model, path, errors, chars=50):
    return {"model": model, "cer": sum(errors) / (chars * len(errors)), "errors_path": path}


def test_a_gap_inside_its_bootstrap_interval_is_a_tie_and_a_clear_one_a_win(tmp_path):
    rng = random.Random(0)
    base = [rng.randint(10, 40) for _ in range(40)]
    noisy = [max(0, e + rng.randint(-8, 8)) for e in base]      # same system, re-rolled
    better = [e // 2 for e in base]                              # half the errors everywhere
    rows = [scored("base", errors_file(tmp_path / "b.tsv", base), base),
            scored("noisy", errors_file(tmp_path / "n.tsv", noisy), noisy),
            scored("better", errors_file(tmp_path / "g.tsv", better), better)]
    line = summarize(rows, "base", ["noisy", "better"])
    assert "`noisy` is on par with `base`" in line
    assert "`better` beats `base`" in line and "95% interval" in line
    low, high = cer_gap_interval(tmp_path / "b.tsv", tmp_path / "g.tsv")
    gap = 100 * (rows[0]["cer"] - rows[2]["cer"])
    assert 0 < low < gap < high


def test_a_clearly_worse_system_is_called_worse(tmp_path):
    base = [5] * 30
    worse = [20] * 15 + [30] * 15
    rows = [scored("base", errors_file(tmp_path / "b.tsv", base), base),
            scored("worse", errors_file(tmp_path / "w.tsv", worse), worse)]
    assert "`worse` is worse than `base`" in summarize(rows, "base", ["worse"])
