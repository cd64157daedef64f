"""Data sources (the `data_source` kind): Kaldi data dirs, Lhotse cuts, Hugging Face datasets
saved to disk, each on a tiny fixture of real audio; conversion to fairseq manifests; choosing a
source in a recipe; the bad-input policy."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from w2v.data.sources import open_source, structure_data
from w2v.errors import DataError

SR = 16000


def tone(n: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.fixture
def recordings(tmp_path):
    """Two recordings: rec1 (1.0 s), rec2 (0.5 s), as 16-bit WAV files."""
    paths = {}
    for name, n, seed in (("rec1", SR, 1), ("rec2", SR // 2, 2)):
        paths[name] = str(tmp_path / "audio" / f"{name}.wav")
        os.makedirs(os.path.dirname(paths[name]), exist_ok=True)
        sf.write(paths[name], tone(n, seed), SR, subtype="FLOAT")
    return paths


def kaldi_dir(tmp_path, recordings, *, segments=True, scp_extra="") -> str:
    d = tmp_path / "data" / "train"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text(f"rec1 {recordings['rec1']}\nrec2 {recordings['rec2']}\n"
                               + scp_extra)
    if segments:
        (d / "segments").write_text("utt1 rec1 0.00 0.40\nutt2 rec1 0.50 1.00\n"
                                    "utt3 rec2 0.10 -1\n")
        (d / "text").write_text("utt1 the cat\nutt2 a dog\nutt3 cat\n")
        (d / "utt2spk").write_text("utt1 spk1\nutt2 spk1\nutt3 spk2\n")
    else:
        (d / "text").write_text("rec1 the cat\nrec2 a dog\n")
    return str(d)


def source(**data):
    return open_source(structure_data(data))


def test_every_source_is_registered(run_cli):
    result = run_cli("list", "data_source")
    assert result.code == 0
    for name in ("fairseq", "kaldi", "lhotse", "hf_dataset", "features", "units"):
        assert name in result.out


def test_kaldi_segments_cut_the_recordings(tmp_path, recordings):
    src = source(name="kaldi", train=kaldi_dir(tmp_path, recordings), labels="ltr", pad=True)
    table = src.table("train")
    assert table.ids == ["utt1", "utt2", "utt3"] and table.speakers == ["spk1", "spk1", "spk2"]
    assert table.sizes.tolist() == [6400, 8000, 6400]
    dataset = src.dataset("train")
    rec1, rec2 = (sf.read(recordings[r], dtype="float32")[0] for r in ("rec1", "rec2"))
    np.testing.assert_array_equal(dataset[0]["wave"].numpy(), rec1[0:6400])
    np.testing.assert_array_equal(dataset[1]["wave"].numpy(), rec1[8000:16000])
    np.testing.assert_array_equal(dataset[2]["wave"].numpy(), rec2[1600:])    # end -1: to the end
    d = src.dictionary()
    assert d.words(dataset[0]["target"].tolist()) == "THE CAT"
    loader, _ = src.loader("train", train=False)
    batch = next(iter(loader))
    assert batch.source.shape[1] == 8000 and batch.targets is not None


def test_kaldi_without_segments_reads_whole_recordings(tmp_path, recordings):
    src = source(name="kaldi", train=kaldi_dir(tmp_path, recordings, segments=False))
    table = src.table("train")
    assert table.ids == ["rec1", "rec2"] and table.starts is None
    assert src.dataset("train")[1]["wave"].shape[0] == SR // 2


def test_kaldi_piped_commands_are_refused_naming_the_line(tmp_path, recordings, run_cli):
    folder = kaldi_dir(tmp_path, recordings, scp_extra="rec3 sox in.flac -t wav - |\n")
    with pytest.raises(DataError, match="piped command") as err:
        source(name="kaldi", train=folder).table("train")
    assert err.value.where.endswith("wav.scp:3")
    result = run_cli("manifest", "--source", "kaldi", folder, "--dest", tmp_path / "out")
    assert result.code == 2 and "wav.scp:3" in result.err and "piped command" in result.err
    assert "Traceback" not in result.err


def test_bad_input_policy_applies_to_a_kaldi_source(tmp_path, recordings):
    folder = kaldi_dir(tmp_path, recordings, segments=False,
                       scp_extra=f"rec3 {tmp_path}/missing.wav\n")
    with open(os.path.join(folder, "text"), "a") as f:
        f.write("rec3 gone\n")
    with pytest.raises(DataError, match="missing.wav: file not found") as err:
        source(name="kaldi", train=folder).table("train")
    assert err.value.where.endswith("wav.scp:3")
    src = source(name="kaldi", train=folder, bad_input="skip", labels="ltr", pad=True,
                 max_skipped=0.5)                  # 1 of 3 bad: more than the default 10 %
    dataset = src.dataset("train")
    assert len(dataset) == 2
    assert [(s.reason, s.line) for s in dataset.skipped] == [("missing", 3)]


def write_cuts(path, recordings):
    rec = {"id": "rec1", "sources": [{"type": "file", "channels": [0],
                                       "source": recordings["rec1"]}],
           "sampling_rate": SR, "num_samples": SR, "duration": 1.0}
    cuts = [
        {"id": "c1", "start": 0.25, "duration": 0.5, "channel": 0, "type": "MonoCut",
         "recording": rec,
         "supervisions": [{"id": "s2", "recording_id": "rec1", "start": 0.25, "duration": 0.25,
                           "text": "dog", "speaker": "spk1"},
                          {"id": "s1", "recording_id": "rec1", "start": 0.0, "duration": 0.2,
                           "text": "a", "speaker": "spk1"}]},
        {"id": "c2", "start": 0.0, "duration": 0.125, "channel": 0, "type": "MonoCut",
         "recording": rec, "supervisions": []},
    ]
    with gzip.open(path, "wt") as f:
        for cut in cuts:
            f.write(json.dumps(cut) + "\n")
    return str(path)


def test_lhotse_cuts_are_segments_with_their_supervisions(tmp_path, recordings):
    cuts = write_cuts(tmp_path / "cuts.jsonl.gz", recordings)
    src = source(name="lhotse", train=cuts)
    table = src.table("train")
    assert table.ids == ["c1", "c2"] and table.sizes.tolist() == [8000, 2000]
    assert table.texts == ["a dog", None]
    rec1 = sf.read(recordings["rec1"], dtype="float32")[0]
    np.testing.assert_array_equal(src.dataset("train")[0]["wave"].numpy(), rec1[4000:12000])
    with pytest.raises(DataError, match="`c2` has no transcript"):
        source(name="lhotse", train=cuts, labels="wrd", pad=True).dataset("train")


def test_lhotse_non_file_recordings_are_refused(tmp_path, recordings):
    path = tmp_path / "cuts.jsonl.gz"
    write_cuts(path, recordings)
    lines = gzip.open(path, "rt").read().splitlines()
    cut = json.loads(lines[1])
    cut["recording"]["sources"] = [{"type": "url", "source": "https://example.org/a.wav"}]
    with gzip.open(path, "wt") as f:
        f.write(lines[0] + "\n" + json.dumps(cut) + "\n")
    with pytest.raises(DataError, match="type url") as err:
        source(name="lhotse", train=str(path)).table("train")
    assert err.value.where.endswith("cuts.jsonl.gz:2")


def test_hf_dataset_saved_to_disk(tmp_path, recordings):
    datasets = pytest.importorskip("datasets", reason="`datasets` is not installed")
    import io

    blob = io.BytesIO()
    sf.write(blob, tone(4000, 7), SR, format="WAV", subtype="FLOAT")
    rows = {"audio": [{"bytes": blob.getvalue(), "path": None},
                      {"bytes": None, "path": recordings["rec2"]}],
            "text": ["the cat", "a dog"], "key": ["u1", "u2"]}
    ds = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False))
    datasets.DatasetDict({"train": ds, "validation": ds.select([1])}).save_to_disk(
        str(tmp_path / "hf"))
    src = source(name="hf_dataset", train=str(tmp_path / "hf"), valid=str(tmp_path / "hf"),
                 id_column="key", labels="ltr", pad=True)
    table = src.table("train")
    assert table.ids == ["u1", "u2"] and table.sizes.tolist() == [4000, SR // 2]
    dataset = src.dataset("train")
    np.testing.assert_array_equal(dataset[0]["wave"].numpy(), tone(4000, 7))
    np.testing.assert_array_equal(dataset[1]["wave"].numpy(),
                                  sf.read(recordings["rec2"], dtype="float32")[0])
    assert src.dictionary().words(dataset[1]["target"].tolist()) == "A DOG"
    assert src.table("valid").ids == ["u2"]                          # the `validation` split
    with pytest.raises(DataError, match="no column `txt`"):
        source(name="hf_dataset", train=str(tmp_path / "hf"), text_column="txt").table("train")


def test_manifest_command_converts_a_kaldi_dir(tmp_path, recordings, run_cli):
    folder = kaldi_dir(tmp_path, recordings)
    dest = tmp_path / "manifests"
    result = run_cli("manifest", "--source", "kaldi", folder, "--dest", dest)
    assert result.code == 0, result.err
    assert (dest / "train.wrd").read_text().splitlines() == ["THE CAT", "A DOG", "CAT"]
    assert (dest / "train.ltr").read_text().splitlines()[0] == "T H E | C A T |"
    assert (dest / "dict.ltr.txt").exists()
    # the fairseq source reads the converted split exactly as the Kaldi source reads the original
    kaldi = source(name="kaldi", train=folder, labels="ltr", pad=True).dataset("train")
    fairseq = source(train=str(dest / "train.tsv"), labels="ltr", pad=True).dataset("train")
    assert len(fairseq) == len(kaldi) == 3
    for i in range(3):
        torch.testing.assert_close(fairseq[i]["wave"], kaldi[i]["wave"])
        assert fairseq[i]["target"].tolist() == kaldi[i]["target"].tolist()


def test_a_recipe_picks_a_source_by_name(tmp_path, recordings):
    from w2v.config.recipe import recipe_from_dict
    from w2v.stages import plan_stages

    folder = kaldi_dir(tmp_path, recordings)
    raw = recipe_from_dict({"data": {"train": "x.tsv", "max_sample_size": 1000,
                                     "max_tokens": 2000},
                            "stages": {"a": {"name": "report", "evaluations": [],
                                             "data": {"name": "kaldi", "train": folder}}}})
    data = plan_stages(raw)["a"].sections.data
    assert data.name == "kaldi" and data.train == folder
    # switching the name replaces the section instead of merging the fairseq keys into it
    assert data.max_sample_size == 250_000
    raw = recipe_from_dict({"data": {"name": "kaldy"}})
    from w2v.errors import ConfigError
    with pytest.raises(ConfigError, match="unknown data_source `kaldy`.*kaldi"):
        plan_stages(raw)


def test_a_third_party_data_source_feeds_the_train_stage(tmp_path, toy_plugins, run_cli):
    import yaml

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "data": {"name": "toy_sines", "utterances": 6, "samples": 400},
        "model": {"encoder": {"name": "toy_encoder"}, "aggregator": {"name": "toy_aggregator"}},
        "objective": {"name": "toy_objective"},
        "trainer": {"max_updates": 2, "log_interval": 1, "save_interval": 0},
        "stages": {"train": {"name": "train"}}}))
    result = run_cli("list", "data_source")
    assert "toy_sines" in result.out
    result = run_cli(recipe, "--out", tmp_path / "run")
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "run" / "train" / "summary.json").read_text())
    assert summary["updates"] == 2
    assert summary["data"] == {"source": "toy_sines", "kind": "waveform", "dim": 1}
