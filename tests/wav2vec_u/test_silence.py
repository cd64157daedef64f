"""wav2vec-U silence removal: the energy VAD on audio with known gaps, the undo mapping, the
`remove_silence` stage's outputs (trimmed audio, manifests, carried labels, records) and the
stage feeding `featurize_audio` through the recipe machinery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from w2v.plugins.wav2vec_u.silence import RemoveSilenceConfig, read_vads, trim_split
from w2v.plugins.wav2vec_u.vad import speech_intervals, to_original, to_trimmed

RATE = 16000
FRAME = 400                                    # 25 ms at 16 kHz, the default frame


def bursts(spans: list[tuple[int, int]], total: int, seed: int = 0) -> np.ndarray:
    """Near-silence (noise at about -80 dBFS) with tone-plus-noise bursts over ``spans``."""
    rng = np.random.default_rng(seed)
    wave = 1e-4 * rng.standard_normal(total)
    for i, (a, b) in enumerate(spans):
        t = np.arange(b - a) / RATE
        wave[a:b] += 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t) + 0.05 * \
            rng.standard_normal(b - a)
    return wave.astype(np.float32)


SPANS = [(8000, 20000), (28000, 36000), (44000, 60000)]   # gaps of 0.5 s
TOTAL = 68000


def test_detected_intervals_match_the_known_bursts_within_a_frame():
    cfg = RemoveSilenceConfig(pad_ms=0.0)
    found = speech_intervals(torch.from_numpy(bursts(SPANS, TOTAL)), cfg.settings(RATE))
    assert found.shape == (len(SPANS), 2)
    assert (found - torch.tensor(SPANS)).abs().max() <= FRAME
    # padding widens every interval, and a pause shorter than min_silence is kept
    padded = speech_intervals(torch.from_numpy(bursts(SPANS, TOTAL)),
                              RemoveSilenceConfig(pad_ms=50.0).settings(RATE))
    assert (padded[:, 0] < found[:, 0]).all() and (padded[:, 1] > found[:, 1]).all()
    bridged = speech_intervals(torch.from_numpy(bursts(SPANS, TOTAL)),
                               RemoveSilenceConfig(min_silence_ms=600.0).settings(RATE))
    assert bridged.shape == (1, 2)


def test_an_utterance_without_speech_has_no_interval():
    settings = RemoveSilenceConfig().settings(RATE)
    quiet = bursts([], 32000)
    assert speech_intervals(torch.from_numpy(quiet), settings).shape == (0, 2)
    assert speech_intervals(torch.zeros(32000), settings).shape == (0, 2)


def test_the_undo_mapping_returns_original_positions():
    kept = torch.tensor([[10, 20], [30, 35], [50, 52]])
    trimmed = torch.arange(17)                       # 10 + 5 + 2 kept samples
    original = to_original(kept, trimmed)
    assert original.tolist() == [*range(10, 20), *range(30, 35), 50, 51]
    assert torch.equal(to_trimmed(kept, original), trimmed)
    # removed samples map to the cut; the ends map to the ends
    assert to_trimmed(kept, torch.tensor([0, 9, 20, 25, 29, 35, 49, 52, 99])).tolist() == \
        [0, 0, 10, 10, 10, 15, 15, 17, 17]
    assert to_original(kept, torch.tensor([17])).tolist() == [52]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """A manifest of three files (bursts; near-silence; digital zeros: a bad input) with
    labels."""
    audio = tmp_path / "corpus" / "wav"
    audio.mkdir(parents=True)
    waves = {"speech.wav": bursts(SPANS, TOTAL), "quiet.wav": bursts([], 24000, seed=1),
             "zeros.wav": np.zeros(16000, np.float32)}
    for name, wave in waves.items():
        sf.write(audio / name, wave, RATE, subtype="PCM_16")
    root = tmp_path / "corpus"
    (root / "train.tsv").write_text(f"{root}\n" + "".join(
        f"wav/{n}\t{len(w)}\n" for n, w in waves.items()))
    (root / "train.phn").write_text("a b c\nsil\nsil\n")
    (root / "train.wrd").write_text("ABC\n\n\n")
    (root / "train.align.tsv").write_text(
        "sil,0,8000 a,8000,20000 sil,20000,28000 b,28000,36000 sil,36000,44000 "
        "c,44000,60000 sil,60000,68000\nsil,0,24000\nsil,0,16000\n")
    (root / "dict.phn.txt").write_text("a 1\nb 1\nc 1\n")
    return root


def test_trimmed_audio_labels_and_records(corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    counts, skipped = trim_split(str(corpus / "train.tsv"), out, "train",
                                 RemoveSilenceConfig(pad_ms=0.0), policy="skip")
    # the near-silent utterance is kept whole and reported; the all-zero file is a bad
    # input (as for every reader), left out under `skip` and listed
    assert counts["utterances"] == 2 and counts["skipped"] == 1
    assert [(r.reason, r.line) for r in skipped] == [("silent", 4)]
    assert counts["no_speech"] == 1 and counts["no_speech_rows"] == [3]
    rows = (out / "train.tsv").read_text().splitlines()
    assert rows[0] == str(out.absolute() / "audio" / "train")
    assert len(rows) == 3 and rows[2].split("\t")[1] == "24000"
    vads = read_vads(out / "train.vads")
    assert len(vads) == 2 and vads[1].tolist() == [[0, 24000]]
    # the speech file: only the bursts remain, and every sample maps back to its original
    original, _ = sf.read(corpus / "wav" / "speech.wav", dtype="int16")
    trimmed, _ = sf.read(Path(rows[0]) / rows[1].split("\t")[0], dtype="int16")
    assert len(trimmed) == int(rows[1].split("\t")[1]) == int((vads[0][:, 1] - vads[0][:, 0]).sum())
    assert abs(len(trimmed) - sum(b - a for a, b in SPANS)) <= 2 * len(SPANS) * FRAME
    back = to_original(vads[0], torch.arange(len(trimmed))).numpy()
    assert np.array_equal(trimmed, original[back])
    removed = (TOTAL - len(trimmed)) / RATE
    assert counts["removed_seconds"] == pytest.approx(removed, abs=1e-3)
    assert counts["removed_percent"] == pytest.approx(100 * removed / (TOTAL / RATE + 1.5),
                                                      abs=1e-2)
    # labels carried row for row; alignments moved onto the trimmed samples
    assert (out / "train.phn").read_text() == "a b c\nsil\n"
    assert (out / "train.wrd").read_text() == "ABC\n\n"
    assert (out / "train.align.tsv").read_text().splitlines()[1] == "sil,0,24000"
    assert (out / "dict.phn.txt").exists()
    first = [seg.rsplit(",", 2) for seg in
             (out / "train.align.tsv").read_text().splitlines()[0].split()]
    assert [p for p, _, _ in first] == ["sil", "a", "sil", "b", "sil", "c", "sil"]
    edges = [(int(s), int(e)) for _, s, e in first]
    assert edges[0][0] == 0 and edges[-1][1] == len(trimmed)          # still contiguous
    assert all(e == s for (_, e), (s, _) in zip(edges, edges[1:]))
    bounds = dict(zip([p for p, _, _ in first], edges))
    for phone, (a, b) in zip("abc", SPANS):
        start, end = bounds[phone]
        assert abs(int(to_original(vads[0], torch.tensor([start]))) - a) <= FRAME
        assert b - a - 2 * FRAME <= end - start <= b - a               # the phones stay
    gaps = [e - s for (p, _, _), (s, e) in zip(first, edges) if p == "sil"]
    assert max(gaps) <= 2 * FRAME and sum(gaps) < 8000               # the silences went


def test_bad_inputs_follow_the_data_policy(corpus: Path, tmp_path: Path):
    from w2v.errors import DataError

    with pytest.raises(DataError, match="zeros.wav.*every sample is zero"):
        trim_split(str(corpus / "train.tsv"), tmp_path / "a", "train", RemoveSilenceConfig())
    (corpus / "wav" / "quiet.wav").unlink()
    counts, skipped = trim_split(str(corpus / "train.tsv"), tmp_path / "b", "train",
                                 RemoveSilenceConfig(), policy="skip")
    assert counts["utterances"] == 1 and counts["skipped"] == 2
    assert [(r.reason, r.line) for r in skipped] == [("missing", 3), ("silent", 4)]
    assert (tmp_path / "b" / "train.phn").read_text() == "a b c\n"
    assert len((tmp_path / "b" / "train.vads").read_text().splitlines()) == 1


def test_the_stage_feeds_featurize_through_the_recipe(corpus: Path, tmp_path: Path, capsys):
    from w2v.cli import main

    (corpus / "valid.tsv").write_text((corpus / "train.tsv").read_text())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
data: {{train: {corpus / 'train.tsv'}, valid: {corpus / 'valid.tsv'}, bad_input: skip,
       max_skipped: 0.5}}
model:
  encoder: {{name: logmel, num_mel_bins: 8, frame_shift_ms: 20.0}}
stages:
  silence: {{name: remove_silence}}
  featurize:
    name: featurize_audio
    data: {{train: silence, valid: silence}}
""")
    run = tmp_path / "run"
    assert main([str(recipe), "--out", str(run)]) == 0
    summary = json.loads((run / "silence" / "silence.json").read_text())
    assert set(summary["splits"]) == {"train", "valid"}
    assert summary["splits"]["train"]["no_speech"] == 1
    assert "zeros.wav\tsilent" in (run / "silence" / "skipped.tsv").read_text()
    assert 0 < summary["splits"]["train"]["removed_percent"] < 50
    meta = json.loads((run / "featurize" / "features.json").read_text())
    assert meta["splits"]["train"]["manifest"] == str(run / "silence" / "train.tsv")
    trimmed = int((run / "silence" / "train.tsv").read_text().splitlines()[1].split("\t")[1])
    lengths = [int(n) for n in (run / "featurize" / "train_0_1.len").read_text().split()]
    assert abs(lengths[0] - trimmed / 320) <= 2 < abs(lengths[0] - TOTAL / 320)
    # resumable: an interrupted stage keeps the splits it finished
    (run / "silence" / "DONE").unlink()
    stamp = (run / "silence" / "audio" / "train" / "wav" / "speech.wav").stat().st_mtime_ns
    (run / "silence" / "valid.done").unlink()
    assert main([str(recipe), "--out", str(run), "--stages", "silence"]) == 0
    assert (run / "silence" / "audio" / "train" / "wav" / "speech.wav").stat().st_mtime_ns == stamp
    assert (run / "silence" / "valid.done").exists()
    # a mistake in the stage's settings is a clear exit 2
    capsys.readouterr()
    assert main([str(recipe), "--out", str(tmp_path / "bad"),
                 "stages.silence.floor_percentile=99"]) == 2
    assert "floor_percentile" in capsys.readouterr().err
    # more bad inputs than `data.max_skipped` allows stop the stage, naming them
    assert main([str(recipe), "--out", str(tmp_path / "strict"), "data.max_skipped=0.1"]) == 2
    assert "1 of 3 utterances" in capsys.readouterr().err
    assert "zeros.wav" in (tmp_path / "strict" / "silence" / "skipped.tsv").read_text()
