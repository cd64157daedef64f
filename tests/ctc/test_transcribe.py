"""Transcribing with a fine-tuned CTC model: the chunk plan, chunked decoding of a long file
(equal to unchunked decoding when the chunks' context covers the model's window), batched vs
single, ``model.transcribe`` and the real ``w2vrun transcribe`` script on wav files."""

from __future__ import annotations

import pytest
import torch
from core_testkit import run_w2vrun_process
from ctc_fixtures import SPOKEN, assert_clean_user_error, say, words, write_wave

from w2v.errors import ConfigError
from w2v.plugins.ctc.chunking import chunk_plan, chunked_emissions
from w2v.plugins.ctc.transcribe import transcribe


@pytest.mark.parametrize("num_frames,chunk,context", [(10, 4, 0), (10, 4, 2), (100, 7, 5),
                                                      (9, 3, 20), (5, 8, 1), (12, 4, 3)])
def test_chunk_plan_owns_every_frame_once_and_runs_the_right_samples(num_frames, chunk, context):
    stride, field = 16, 40
    num_samples = (num_frames - 1) * stride + field + 7        # a few samples left over
    plan = chunk_plan(num_samples, num_frames, stride=stride, receptive_field=field,
                      chunk_frames=chunk, context_frames=context)
    owned = []
    for p in plan:
        first = p.start // stride                               # utterance frame of piece frame 0
        assert p.start % stride == 0
        assert 0 <= p.keep_from < p.keep_to <= p.frames
        owned += range(first + p.keep_from, first + p.keep_to)
        # the piece's samples give exactly its frames (the last one runs to the end of the audio)
        assert p.frames == (p.end - p.start - field) // stride + 1
        assert p.keep_from == min(context, first + p.keep_from)     # context, as far as it goes
    assert owned == list(range(num_frames))
    assert plan[-1].end == num_samples
    assert (len(plan) == 1) == (num_frames <= chunk)


def test_chunk_plan_without_chunk_length_is_the_whole_utterance():
    [piece] = chunk_plan(1000, 60, stride=16, receptive_field=40, chunk_frames=None)
    assert (piece.start, piece.end, piece.keep_from, piece.keep_to) == (0, 1000, 0, 60)


@pytest.fixture(scope="module")
def long_wave(ctc_run):
    """About 0.8 s (800 frames of 1 ms) of synthetic speech: 60 utterances one after another."""
    texts = [SPOKEN[n] for n in SPOKEN] * 20
    wave = torch.cat([say(ctc_run.dictionary, t, 100 + i) for i, t in enumerate(texts)])
    return wave, " ".join(words(t) for t in texts)


def test_long_file_in_chunks_equals_unchunked_decoding(ctc_model, long_wave):
    wave, reference = long_wave
    # 0.02 s = 20 frames per chunk: ~40 chunks, boundaries inside words
    frames = int(ctc_model.encoder.output_lengths(torch.tensor([wave.shape[0]]))[0])
    assert frames > 600
    whole = chunked_emissions(ctc_model, [wave], chunk_seconds=None)[0]
    chunked = chunked_emissions(ctc_model, [wave], chunk_seconds=0.02, context_seconds=0.005)[0]
    assert chunked.shape == whole.shape == (frames, len(ctc_model.dictionary))
    # the window of every frame is 5 frames, and 0.005 s of context is 5 frames
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    text = transcribe(ctc_model, wave, chunk_seconds=0.02, context_seconds=0.005)
    assert text == transcribe(ctc_model, wave, chunk_seconds=None)
    assert text.split() == reference.split()
    # without context, frames right after each boundary lose their left window: a real test
    blind = chunked_emissions(ctc_model, [wave], chunk_seconds=0.02, context_seconds=0.0)[0]
    assert not torch.allclose(blind, whole, atol=1e-3)


def test_batched_and_single_transcription_are_identical(ctc_run, ctc_model, long_wave):
    waves = [say(ctc_run.dictionary, t, 7 + i) for i, t in enumerate(SPOKEN.values())]
    waves.append(waves[0].clone())                       # two of equal length share a forward
    waves.append(long_wave[0])                           # chunked: pieces batched together
    options = {"chunk_seconds": 0.02, "context_seconds": 0.005}
    together = chunked_emissions(ctc_model, waves, **options)
    for wave, batched in zip(waves, together):
        [alone] = chunked_emissions(ctc_model, [wave], **options)
        torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-5)
    texts = transcribe(ctc_model, waves, **options)
    assert texts == [transcribe(ctc_model, w, **options) for w in waves]
    assert texts[:3] == [words(t) for t in SPOKEN.values()]
    # a [B, S] tensor is B utterances
    pair = torch.stack([waves[0], waves[3]])
    assert ctc_model.transcribe(pair) == [texts[0], texts[3]]


def test_model_transcribe_takes_waves_files_and_lists(ctc_run, ctc_model):
    one = ctc_run.audio["one.wav"]
    assert ctc_model.transcribe(one) == words(SPOKEN["one.wav"])           # a path: a string
    assert ctc_model.transcribe(str(one)) == words(SPOKEN["one.wav"])
    assert ctc_model.transcribe(say(ctc_run.dictionary, SPOKEN["two.wav"], 3)) == "NOTE"
    assert ctc_model.transcribe([str(p) for p in ctc_run.audio.values()]) == \
        [words(t) for t in SPOKEN.values()]


def test_model_transcribe_with_a_language_model(ctc_run, ctc_model, tmp_path):
    pytest.importorskip("flashlight.lib.text")
    from w2v.plugins.ctc.transcribe import lm_decoder

    decoder, info = lm_decoder(ctc_model, lm_text=ctc_run.lm_text, directory=tmp_path, beam=8)
    assert info["report"]["words"] == 5 and (tmp_path / "lexicon.txt").exists()
    files = [str(p) for p in ctc_run.audio.values()]
    assert ctc_model.transcribe(files, decoder=decoder) == [words(t) for t in SPOKEN.values()]
    assert ctc_model.transcribe(files[0], lm=tmp_path / "lm.arpa") == "TEN ATE"


def test_a_model_without_a_ctc_head_cannot_transcribe(ctc_run):
    import w2v

    bare = w2v.load_pretrained(ctc_run.pretrained)
    with pytest.raises(ConfigError, match="no CTC head"):
        bare.transcribe(torch.zeros(1600))


def test_transcribe_command_prints_each_file_and_its_text(ctc_run, tmp_path):
    files = [str(p) for p in ctc_run.audio.values()]
    result = run_w2vrun_process("transcribe", ctc_run.checkpoint, *files, "--device", "cpu")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines == [f"{f}\t{words(t)}" for f, t in zip(files, SPOKEN.values())]


def test_transcribe_command_decodes_a_long_file_in_chunks(ctc_run, ctc_model, long_wave,
                                                          run_cli, tmp_path):
    path = write_wave(tmp_path / "long.wav", long_wave[0])
    result = run_cli("transcribe", ctc_run.checkpoint, path, "--chunk-seconds", "0.02",
                     "--context-seconds", "0.005", "--device", "cpu")
    assert result.code == 0, result.err
    assert result.out == f"{path}\t{long_wave[1]}\n"
    # a manifest stands for its files
    result = run_cli("transcribe", ctc_run.checkpoint, ctc_run.manifest, "--device", "cpu")
    assert [line.split("\t")[1] for line in result.out.splitlines()] == \
        [words(t) for t in SPOKEN.values()]


def test_transcribe_command_with_an_lm_built_from_text(ctc_run, run_cli):
    pytest.importorskip("flashlight.lib.text")
    result = run_cli("transcribe", ctc_run.checkpoint, ctc_run.audio["three.wav"], "--lm-text",
                     ctc_run.lm_text, "--beam", "8", "--device", "cpu")
    assert result.code == 0, result.err
    assert result.out.rstrip("\n").split("\t")[1] == "EAT ON"


@pytest.mark.parametrize("case", ["missing checkpoint", "missing audio", "no ctc head",
                                  "not audio", "too short"])
def test_transcribe_user_errors_exit_2_naming_the_file(ctc_run, tmp_path, case):
    audio = str(ctc_run.audio["one.wav"])
    short = write_wave(tmp_path / "short.wav", torch.full((10,), 0.1))   # < 16 samples: no frame
    args, named = {
        "missing checkpoint": ([tmp_path / "nope", audio], [f"`{tmp_path / 'nope'}`",
                                                            "does not exist"]),
        "missing audio": ([ctc_run.checkpoint, tmp_path / "nope.wav"],
                          [f"`{tmp_path / 'nope.wav'}`", "does not exist"]),
        "no ctc head": ([ctc_run.pretrained, audio], [f"`{ctc_run.pretrained}`", "no CTC head",
                                                      "Fine-tune it"]),
        "not audio": ([ctc_run.checkpoint, ctc_run.lm_text], [str(ctc_run.lm_text),
                                                              "cannot be decoded"]),
        "too short": ([ctc_run.checkpoint, audio, short], [str(short), "at least 16"]),
    }[case]
    result = run_w2vrun_process("transcribe", *args, "--device", "cpu")
    assert_clean_user_error(result, *named)


def test_transcribe_a_hugging_face_directory_with_its_vocab_json(ctc_run, run_cli, tmp_path):
    """An imported model gets its dictionary from the directory's vocab.json (or from
    `--dictionary`) and transcribes like Hugging Face's own greedy decoding."""
    transformers = pytest.importorskip("transformers")
    import json

    vocab = {s: i for i, s in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A",
                                         "O"])}
    torch.manual_seed(0)
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=[16, 16], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4, vocab_size=len(vocab), pad_token_id=0)
    hf = transformers.Wav2Vec2ForCTC(cfg).eval()
    with torch.no_grad():
        hf.lm_head.weight.mul_(30)                   # confident, varied letters
        hf.lm_head.bias[1:4] = -1e4                  # never <s> </s> <unk>
    hf_dir = tmp_path / "hf"
    hf.save_pretrained(hf_dir)
    (hf_dir / "vocab.json").write_text(json.dumps(vocab))
    wave = 0.3 * torch.randn(8000, generator=torch.Generator().manual_seed(1))
    path = write_wave(tmp_path / "noise.wav", wave)

    with torch.no_grad():
        ids = hf(wave[None]).logits[0].argmax(-1).tolist()
    symbols = sorted(vocab, key=vocab.get)
    collapsed = [i for k, i in enumerate(ids) if i != 0 and (k == 0 or ids[k - 1] != i)]
    expected = " ".join("".join(symbols[i] for i in collapsed).replace("|", " ").split())
    assert expected                                  # a non-trivial transcript to compare

    result = run_cli("transcribe", hf_dir, path, "--device", "cpu")
    assert result.code == 0, result.err
    assert result.out == f"{path}\t{expected}\n"
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (hf_dir / "vocab.json").unlink()
    result = run_cli("transcribe", hf_dir, path, "--device", "cpu")
    assert result.code == 2 and "--dictionary" in result.err
    result = run_cli("transcribe", hf_dir, path, "--dictionary", tmp_path / "vocab.json")
    assert result.code == 0 and result.out == f"{path}\t{expected}\n"
