"""``w2vrun ablate``: a tiny study (2 variants x 2 seeds and a variant that cannot build) runs
end to end as real w2v runs and writes its page; the failed variant is on the page with its
error; a rerun skips finished runs; runs made elsewhere merge in; study mistakes exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_study import write_study  # noqa: E402

RUNS = ("gumbel-s1", "gumbel-s2", "kmeans-s1", "kmeans-s2")


def ablate(*args, cwd: Path):
    from w2v.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["ablate", *map(str, args)])
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    path = write_study(root)
    code, out, err = ablate(path, "--parallel", "2", cwd=root)
    return root, path, code, out, err


def test_every_variant_runs_as_a_w2v_run(study):
    root, _, code, out, err = study
    runs = root / "runs" / "ablations" / "study"
    for name in RUNS:
        run = runs / name
        assert (run / "DONE").is_file(), (name, (run / "ablate.log").read_text())
        assert (run / "evaluate" / "results.json").is_file()
        assert json.loads((run / "variant.json").read_text())["seed"] == int(name[-1])
    # the seed reached only the fine-tuning stage; pretraining was shared by the seeds
    assert (runs / "gumbel-s2" / "pretrain" / "model.pt").read_bytes() == \
        (runs / "gumbel-s1" / "pretrain" / "model.pt").read_bytes()
    assert (runs / "gumbel-s2" / "finetune" / "model.pt").read_bytes() != \
        (runs / "gumbel-s1" / "finetune" / "model.pt").read_bytes()
    assert "gumbel-s2 starts" in out and "`pretrain` already done" in \
        (runs / "gumbel-s2" / "ablate.log").read_text()


def test_page_has_table_intervals_plot_and_provenance(study):
    root, path, *_ = study
    page = path.with_suffix(".md").read_text()
    table = page.split("## Results")[1].split("\n\n")[1].splitlines()
    assert table[0] == ("| variant | CER % | pretrain loss | finetune updates | prob perplexity "
                        "| runs finished |")
    gumbel = next(line for line in table if line.startswith("| `gumbel`"))
    assert " ± " in gumbel and gumbel.endswith("| 2 of 2 |")
    # the table's mean is the mean of the two runs' results.json
    runs = root / "runs" / "ablations" / "study"
    cers = [json.loads((runs / f"kmeans-s{s}" / "evaluate" / "results.json").read_text())
            ["results"][0]["cer"] * 100 for s in (1, 2)]
    kmeans = next(line for line in table if line.startswith("| `kmeans`"))
    shown = float(kmeans.split(" | ")[1].split(" ± ")[0])
    assert shown == pytest.approx(sum(cers) / 2, rel=5e-3)              # 3 significant digits
    assert "Paired bootstrap against `gumbel`" in page and "| `kmeans` | CER % |" in page
    assert "`model.quantizer={name: kmeans, groups: 1, num_vars: 8}`" in page
    assert "w2vrun ablate" in page and "commit `" in page and "cores available" in page
    png = path.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in page


def test_failed_variant_is_shown_with_its_error_and_exit_code_is_nonzero(study):
    _, path, code, out, _ = study
    assert code == 1
    page = path.with_suffix(".md").read_text()
    assert "| `broken` | **failed** |" in page
    assert "`broken-s1` failed:" in page and "`model.quantizer.temp`: unknown key" in page
    assert "broken-s1, broken-s2" in out


def test_a_metric_a_finished_run_does_not_log_is_n_a_not_a_failure(study):
    """k-means logs no prob_perplexity (the Gumbel quantizer's): its runs finished, the
    table says n/a and the page says which value is missing, not that the run failed."""
    _, path, *_ = study
    page = path.with_suffix(".md").read_text()
    kmeans = next(line for line in page.split("## Results")[1].splitlines()
                  if line.startswith("| `kmeans`"))
    assert "| n/a |" in kmeans and kmeans.endswith("| 2 of 2 |")
    assert "## Failed runs and missing values" in page
    assert "`kmeans-s1` finished, but its prob perplexity is missing (shown as n/a)" in page
    assert "`kmeans-s1` failed" not in page


def test_rerun_skips_finished_runs(study):
    root, path, *_ = study
    runs = root / "runs" / "ablations" / "study"
    stamps = {n: (runs / n / "DONE").stat().st_mtime_ns for n in RUNS}
    code, out, err = ablate(path, cwd=root)
    assert code == 1                                   # `broken` still fails
    assert "4 of 6 runs were already done (DONE markers) and are skipped" in out
    for name in RUNS:
        assert (runs / name / "DONE").stat().st_mtime_ns == stamps[name]
        assert f"{name} starts" not in out
    assert "broken-s1 starts" in out                   # failed runs are tried again


def test_runs_from_another_machine_merge_in(study, tmp_path):
    root, path, *_ = study
    elsewhere = tmp_path / "gpu" / "study"
    shutil.copytree(root / "runs" / "ablations" / "study" / "kmeans-s1", elsewhere / "kmeans-s1")
    code, out, _ = ablate(path, "--runs", tmp_path / "here", "--merge", elsewhere, "--no-run",
                          cwd=root)
    assert code == 1 and "merged kmeans-s1" in out
    assert (tmp_path / "here" / "kmeans-s1" / "DONE").is_file()
    page = path.with_suffix(".md").read_text()
    assert "`gumbel-s1` has not run" in page and "| `kmeans` |" in page
    assert "1 of 2 (**failed**)" in page


def test_study_mistakes_exit_2_with_file_line_and_key(tmp_path):
    path = write_study(tmp_path, extra="seedz: [3]\n")
    code, _, err = ablate(path, cwd=tmp_path)
    assert code == 2 and "Traceback" not in err
    line = path.read_text().splitlines().index("seedz: [3]") + 1
    assert f"{path}:{line}:" in err and "`seedz`: unknown key" in err and "seeds" in err


@pytest.mark.parametrize("study_file", sorted((Path(__file__).resolve().parents[2] / "docs" /
                                               "ablations").glob("*.yaml")), ids=lambda p: p.stem)
def test_committed_studies_build_every_variant(study_file, tmp_path):
    """The studies under docs/ablations/ are ready to run: each variant passes --dry-run."""
    code, out, err = ablate(study_file, "--dry-run", "--runs", tmp_path, cwd=tmp_path)
    assert code == 0, out + err
    assert "FAILS" not in out and out.count(": builds") >= 2


def test_the_page_commit_is_dirty_for_changed_code_not_for_the_pages_ablate_writes(tmp_path):
    import subprocess

    from w2v.plugins.ablation.machine import git_commit, study_outputs

    def git(*argv):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv],
                       cwd=tmp_path, check=True, capture_output=True)

    studies = tmp_path / "docs" / "ablations"
    studies.mkdir(parents=True)
    for name in ("a.yaml", "a.md", "a.png", "b.yaml", "b.md"):
        (studies / name).write_text("x\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    clean = git_commit(tmp_path)
    assert len(clean) == 12 and not clean.endswith("-dirty")
    for name in ("a.md", "a.png", "b.md"):           # this study's and another's pages
        (studies / name).write_text("regenerated\n")
    assert git_commit(tmp_path, study_outputs(studies / "a.yaml")) == clean
    assert git_commit(tmp_path) == clean + "-dirty"
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path, study_outputs(studies / "a.yaml")) == clean + "-dirty"
