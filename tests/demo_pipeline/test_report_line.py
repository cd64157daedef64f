"""The report's one-line reading of the numbers."""

from w2v.plugins.stages.report import summarize


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
