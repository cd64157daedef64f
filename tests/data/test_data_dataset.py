"""The bad-input policy end to end (manifest -> loader), labels, filters, skip reports."""

import logging
import os

import numpy as np
import pytest

from w2v.data.config import DataConfig
from w2v.data.dataset import AudioDataset
from w2v.data.sources import build_loader
from w2v.data.skips import write_skip_report
from w2v.errors import ConfigError, DataError

GOOD = 4


def _bad_file(corpus, case):
    """(relative path, manifest count) of a file with the problem ``case``."""
    if case == "missing":
        return "gone.wav", 1600
    if case == "unreadable":
        path = corpus.audio("hdr.flac", n=1600)
        open(path, "wb").write(open(path, "rb").read()[:20])
        return "hdr.flac", 1600
    if case == "truncated":
        path = corpus.audio("cut.wav", n=1600)
        raw = open(path, "rb").read()
        open(path, "wb").write(raw[:len(raw) - 1000])
        return "cut.wav", 1600
    if case == "empty":
        corpus.audio("empty.wav", data=np.zeros(0, np.float32))
        return "empty.wav", 0
    if case == "silent":
        corpus.audio("zero.flac", data=np.zeros(1600, np.float32))
        return "zero.flac", 1600
    if case == "non-finite":
        data = np.full(1600, 0.1, np.float32)
        data[5] = np.nan
        corpus.audio("nan.wav", data=data, subtype="FLOAT")
        return "nan.wav", 1600
    if case == "too-short":
        corpus.audio("short.wav", n=300)
        return "short.wav", 300
    if case == "size-mismatch":
        corpus.audio("stale.wav", n=1500)
        return "stale.wav", 1600
    raise AssertionError(case)


CASES = ["missing", "unreadable", "truncated", "empty", "silent", "non-finite", "too-short",
         "size-mismatch"]


def _setup(corpus, case, policy, **cfg):
    rows = [(corpus.audio(f"good/u{i}.flac", n=1600 + 100 * i) and f"good/u{i}.flac", 1600 + 100 * i)
            for i in range(GOOD)]
    bad = _bad_file(corpus, case)
    rows.insert(2, bad)  # manifest row 2, line 4
    manifest = corpus.manifest("train.tsv", rows)
    config = DataConfig(train=manifest, bad_input=policy, max_tokens=4000, max_sample_size=2000,
                        **cfg)
    return config, manifest, os.path.join(corpus.root, bad[0])


@pytest.mark.parametrize("case", CASES)
def test_fail_policy_stops_naming_file_and_manifest_line(corpus, case):
    cfg, manifest, bad_path = _setup(corpus, case, "fail")
    with pytest.raises(DataError) as err:
        loader, _ = build_loader(cfg, "train", min_samples=400)
        list(loader)
    assert err.value.where == f"{manifest}:4"
    assert bad_path in err.value.message and "bad_input: skip" in err.value.hint


@pytest.mark.parametrize("case", CASES)
def test_skip_policy_leaves_the_input_out_and_reports_it(corpus, case, tmp_path):
    # 1 bad input of 5 (20 %): more than the default data.max_skipped (10 %) allows
    cfg, manifest, bad_path = _setup(corpus, case, "skip", max_skipped=0.2)
    loader, sampler = build_loader(cfg, "train", min_samples=400)
    batches = list(loader)
    ids = sorted(i for b in batches for i in b.ids.tolist())
    assert ids == [0, 1, 3, 4]  # every good row, once; row 2 is the bad one
    assert all(b.source.shape[0] == b.ids.shape[0] for b in batches)
    reasons = {r.reason for r in loader.skipped}
    assert reasons == {case} and loader.skipped[0].path == bad_path
    assert loader.skipped[0].line == 4 and loader.skipped[0].source == manifest
    summary = write_skip_report(loader.skipped * 2, str(tmp_path / "run"))
    rows = open(tmp_path / "run" / "skipped.tsv").read().splitlines()
    assert len(rows) == 2 and rows[1].split("\t")[:4] == [manifest, "4", bad_path, case]
    assert summary.startswith("skipped 1 input") and case in summary


def test_worker_failure_reaches_the_main_process_without_a_traceback(corpus):
    cfg, manifest, _ = _setup(corpus, "silent", "fail", num_workers=1)
    loader, _ = build_loader(cfg, "train")
    with pytest.raises(DataError) as err:
        list(loader)
    assert err.value.where == f"{manifest}:4" and "Traceback" not in str(err.value)


def test_worker_skips_are_collected(corpus):
    cfg, _, bad_path = _setup(corpus, "non-finite", "skip", num_workers=1, max_skipped=0.2)
    loader, _ = build_loader(cfg, "train", train=False)
    assert sum(b.size for b in loader) == GOOD
    assert [r.path for r in loader.skipped] == [bad_path]


def test_batch_of_only_bad_inputs_is_empty_not_missing(corpus):
    corpus.audio("z.wav", data=np.zeros(800, np.float32))
    corpus.audio("a.wav", n=800)
    manifest = corpus.manifest("train.tsv", [("z.wav", 800), ("a.wav", 800)])
    # one utterance per batch; half the data bad is allowed explicitly (data.max_skipped)
    cfg = DataConfig(train=manifest, bad_input="skip", max_tokens=800, max_sample_size=800,
                     max_skipped=0.5, shuffle=False)
    batches = list(build_loader(cfg, "train")[0])
    assert sorted(b.size for b in batches) == [0, 1]
    (empty,) = [b for b in batches if b.size == 0]
    assert empty.extra["skipped"][0].reason == "silent"


def test_min_sample_size_filters_under_both_policies(corpus):
    rows = [("a.wav", 500), ("b.wav", 1500)]
    for rel, n in rows:
        corpus.audio(rel, n=n)
    manifest = corpus.manifest("train.tsv", rows)
    ds = AudioDataset(manifest, min_sample_size=1000, bad_input="fail")
    assert ds.rows.tolist() == [1] and ds.sizes.tolist() == [1500]
    assert [(s.reason, s.line) for s in ds.skipped] == [("below-min-size", 2)]


def test_resampling_is_logged_once_per_corpus(corpus, caplog):
    rows = [(corpus.audio(f"u{i}.wav", n=800, sr=8000) and f"u{i}.wav", 800) for i in range(3)]
    ds = AudioDataset(corpus.manifest("train.tsv", rows), sample_rate=16000)
    with caplog.at_level(logging.WARNING, logger="w2v.data.dataset"):
        items = [ds[i] for i in range(3)]
    assert [it["wave"].shape[0] for it in items] == [1600] * 3
    assert sum("resampling" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------ labels


def _labelled(corpus, lines, policy="fail", **cfg):
    rows = [(corpus.audio(f"u{i}.flac", n=1000 + 100 * i) and f"u{i}.flac", 1000 + 100 * i)
            for i in range(len(lines))]
    manifest = corpus.manifest("train.tsv", rows)
    corpus.labels("train.ltr", lines)
    corpus.labels("dict.ltr.txt", ["| 10", "A 5", "B 3"])
    settings = {"max_tokens": 10_000, "max_sample_size": 5000, **cfg}
    return DataConfig(train=manifest, labels="ltr", pad=True, bad_input=policy,
                      **settings), manifest


def test_labelled_batches_are_padded_with_targets(corpus):
    cfg, _ = _labelled(corpus, ["A |", "B A |", "A B B |"])
    loader, _ = build_loader(cfg, "train", train=False)
    (batch,) = list(loader)
    order = batch.ids.tolist()
    assert batch.lengths.tolist() == [1000 + 100 * i for i in order]
    expected = {0: [5, 4], 1: [6, 5, 4], 2: [5, 6, 6, 4]}
    for row, i in enumerate(order):
        n = int(batch.target_lengths[row])
        assert batch.targets[row, :n].tolist() == expected[i]
        assert (batch.targets[row, n:] == 1).all()  # the dictionary's pad id
        assert (batch.source[row, batch.lengths[row]:] == 0).all()


def test_unknown_label_symbol_fails_at_load_naming_line_and_symbol(corpus):
    cfg, _ = _labelled(corpus, ["A |", "A Z |", "B |"])
    with pytest.raises(DataError) as err:
        build_loader(cfg, "train")
    assert err.value.where.endswith("train.ltr:2") and "`Z`" in err.value.message


def test_unknown_label_symbol_is_skipped_under_skip(corpus):
    cfg, _ = _labelled(corpus, ["A |", "A Z |", "B |"], policy="skip", max_skipped=0.5)
    loader, _ = build_loader(cfg, "train")
    assert sorted(i for b in loader for i in b.ids.tolist()) == [0, 2]
    assert [(s.reason, s.line) for s in loader.skipped] == [("unknown-symbol", 2)]


def test_label_misalignment_is_a_data_error(corpus):
    cfg, manifest = _labelled(corpus, ["A |", "B |"])
    corpus.labels("train.ltr", ["A |"])
    with pytest.raises(DataError, match="1 lines but manifest"):
        build_loader(cfg, "train")


def test_labelled_audio_longer_than_max_sample_size_is_left_out(corpus):
    cfg, _ = _labelled(corpus, ["A |", "B |", "A |"], max_sample_size=1150)
    loader, _ = build_loader(cfg, "train")
    assert sorted(i for b in loader for i in b.ids.tolist()) == [0, 1]
    assert [s.reason for s in loader.skipped] == ["above-max-size"]


def test_labels_with_cropping_batches_is_a_config_error(corpus):
    cfg, _ = _labelled(corpus, ["A |"])
    cfg.pad = False
    with pytest.raises(ConfigError) as err:
        build_loader(cfg, "train")
    assert err.value.key == "data.pad"
    loader, _ = build_loader(cfg, "train", labels=False)  # pretraining on a labelled corpus
    assert next(iter(loader)).targets is None


def test_missing_manifest_says_how_to_make_one():
    with pytest.raises(DataError) as err:
        build_loader(DataConfig(), "train")
    assert err.value.key == "data.train" and "w2vrun manifest" in err.value.hint
