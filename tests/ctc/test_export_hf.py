"""``w2vrun export RUN --to hf DIR``: a small wav2vec 2.0 CTC model trained here, exported,
loaded by transformers (same logits; the ASR pipeline says what w2v's greedy decoder says); a
pretraining run exported as Wav2Vec2ForPreTraining with its objective's projections; what
cannot be exported stops with exit 2 and one paragraph."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from core_testkit import run_w2vrun_process
from ctc_fixtures import SPOKEN, assert_clean_user_error, say, words
from ctc_synthetic import LETTERS, make_batch, random_texts

transformers = pytest.importorskip("transformers")

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)
RATE = 16000

#: wav2vec 2.0 LARGE-shaped (layer_norm encoder, pre-LN Transformer) in miniature: one
#: 16-sample conv frame per symbol of the synthetic "spoken letters" task.
CTC_MODEL = {
    "encoder": {"name": "wav2vec2_conv", "conv_layers": [[32, 16, 16]], "mode": "layer_norm",
                "conv_bias": True},
    "aggregator": {"name": "transformer", "embed_dim": 32, "layers": 2, "ffn_dim": 64,
                   "heads": 2, "conv_pos": 4, "conv_pos_groups": 2, "layer_norm_first": True,
                   "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
                   "layerdrop": 0.0},
    "head": {"name": "ctc"},
    "quantize": "none",
}


def build(raw: dict, dictionary=None):
    from w2v.build import ModelConfig, build_model
    from w2v.config.structure import structure

    cfg = structure(raw, ModelConfig, path=("model",))
    return build_model(cfg, RATE, dictionary=dictionary), cfg


@pytest.fixture(scope="module")
def ctc_export(tmp_path_factory):
    """A CTC model trained on the synthetic task, saved as a w2v run, and exported by the CLI."""
    from w2v.checkpoint_formats import save_model
    from w2v.data.dictionary import Dictionary
    from w2v.plugins.ctc.objective import CTCConfig, CTCObjective

    root = tmp_path_factory.mktemp("export")
    dictionary = Dictionary.from_symbols(LETTERS)
    model, cfg = build(CTC_MODEL, dictionary)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    objective = CTCObjective(CTCConfig(apply_mask=False, wer_valid=False), dictionary)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(150):
        out = objective(make_batch(dictionary, random_texts(16, g), g), model, step)
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
    save_model(model.eval(), cfg, root / "run" / "finetune" / "model.pt", dictionary=dictionary)
    result = run_w2vrun_process("export", root / "run", "--to", "hf", root / "hf")
    assert result.code == 0, result.err
    assert "Wav2Vec2ForCTC" in result.out
    return root, dictionary


def test_exported_ctc_model_gives_the_same_logits_and_text_in_transformers(ctc_export):
    import w2v
    from transformers import Wav2Vec2ForCTC, pipeline

    from w2v.plugins.ctc.transcribe import transcribe

    root, dictionary = ctc_export
    ours = w2v.load_pretrained(root / "run")
    hf = Wav2Vec2ForCTC.from_pretrained(root / "hf").eval()
    asr = pipeline("automatic-speech-recognition", model=str(root / "hf"), device="cpu")
    for seed, letters in enumerate(SPOKEN.values()):
        wave = say(dictionary, letters, seed)
        with torch.no_grad():
            logits = ours.head(ours.extract_features(wave[None]).output)
            theirs = hf(wave[None]).logits
        torch.testing.assert_close(theirs, logits, atol=1e-4, rtol=0)
        greedy = transcribe(ours, wave, chunk_seconds=None)
        assert greedy == words(letters)            # the model learned the task
        assert asr(wave.numpy())["text"] == greedy


def test_tokenizer_files_follow_wav2vec2_ctc_tokenizer_conventions(ctc_export):
    from transformers import AutoTokenizer, Wav2Vec2CTCTokenizer, Wav2Vec2Processor

    root, dictionary = ctc_export
    hf_dir = root / "hf"
    vocab = json.loads((hf_dir / "vocab.json").read_text())
    # fairseq's blank <s> (id 0) is Hugging Face's <pad>; rows keep their order
    assert list(vocab.items())[:5] == [("<pad>", 0), ("<s>", 1), ("</s>", 2), ("<unk>", 3),
                                       ("|", 4)]
    assert [vocab[s] for s in LETTERS] == [dictionary.index(s) for s in LETTERS]
    config = json.loads((hf_dir / "config.json").read_text())
    assert (config["pad_token_id"], config["vocab_size"]) == (0, len(dictionary))
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    assert isinstance(tokenizer, Wav2Vec2CTCTokenizer)
    assert tokenizer.word_delimiter_token == "|" and tokenizer.pad_token_id == 0
    frames = dictionary.encode("T T <s> E E N | | A <s> T E |".split())   # <s> is the blank
    assert tokenizer.decode(frames) == "TEN ATE"
    ids = tokenizer("TEN ATE").input_ids
    assert ids == dictionary.encode("T E N | A T E".split())
    assert Wav2Vec2Processor.from_pretrained(hf_dir).tokenizer.get_vocab() == vocab


PRETRAIN_MODEL = {
    "encoder": {"name": "wav2vec2_conv", "conv_layers": [[32, 10, 5], [32, 3, 2]],
                "mode": "group_norm"},
    "quantizer": {"name": "gumbel", "groups": 2, "num_vars": 8, "dim": 16},
    "aggregator": {"name": "transformer", "embed_dim": 32, "layers": 1, "ffn_dim": 64,
                   "heads": 2, "conv_pos": 4, "conv_pos_groups": 2},
    "masker": {"name": "span", "mask_prob": 0.5, "mask_length": 2},
}


def test_pretraining_run_exports_as_wav2vec2_for_pretraining(tmp_path):
    """A run trained by the real Trainer (model.pt and checkpoints/pretrain/last.pt, whose
    objective holds project_q and final_proj, Hugging Face's project_hid)."""
    from transformers import Wav2Vec2ForPreTraining

    from w2v.build import build_objective
    from w2v.checkpoint_formats import save_model
    from w2v.config.structure import structure_component
    from w2v.interfaces import Batch
    from w2v.train.config import TrainerConfig
    from w2v.train.trainer import Trainer

    model, cfg = build(PRETRAIN_MODEL)
    objective = build_objective(structure_component(
        "objective", {"name": "masked_contrastive", "num_negatives": 4, "final_dim": 12}), model)
    g = torch.Generator().manual_seed(0)
    batches = [Batch(source=torch.randn(2, 4000, generator=g), lengths=None) for _ in range(2)]
    run = tmp_path / "run"
    trainer = Trainer(TrainerConfig(max_updates=2, device="cpu", lr=1e-3), model, objective,
                      lambda epoch, state: (batches, None), run_dir=run, stage="pretrain",
                      checkpoint_dir=run / "checkpoints" / "pretrain", tensorboard=False)
    trainer.fit()
    save_model(model.eval(), cfg, run / "pretrain" / "model.pt")

    result = run_w2vrun_process("export", run, "--to", "hf", tmp_path / "hf")
    assert result.code == 0, result.err
    assert "note:" not in result.out                # the objective state was found
    hf = Wav2Vec2ForPreTraining.from_pretrained(tmp_path / "hf").eval()
    assert not (tmp_path / "hf" / "vocab.json").exists()
    for ours, theirs in [(objective.final_proj, hf.project_hid),
                         (objective.project_q, hf.project_q)]:
        torch.testing.assert_close(theirs.weight, ours.weight.detach())
    torch.testing.assert_close(hf.quantizer.codevectors, model.quantizer.codevectors.detach())
    wave = torch.randn(1, 4000, generator=g)
    with torch.no_grad():
        ref = hf.wav2vec2(wave)
        feats = model.extract_features(wave)
    torch.testing.assert_close(ref.extract_features, feats.local, atol=1e-4, rtol=0)
    torch.testing.assert_close(ref.last_hidden_state, feats.output, atol=1e-4, rtol=0)


@pytest.mark.parametrize("slot, section, named", [
    ("encoder", {"name": "logmel", "num_mel_bins": 40}, ["encoder `logmel`", "wav2vec2_conv"]),
    ("head", {"name": "ctc", "lstm_layers": 1, "lstm_dim": 8}, ["BiLSTM CTC head"]),
    ("head", {"name": "ctc", "layers": "weighted"}, ["weighted hidden states"]),
])
def test_what_hugging_face_cannot_express_exits_2_naming_it(tmp_path, slot, section, named):
    from w2v.checkpoint_formats import save_model
    from w2v.data.dictionary import Dictionary

    dictionary = Dictionary.from_symbols(LETTERS)
    model, cfg = build({**CTC_MODEL, slot: section}, dictionary)
    save_model(model, cfg, tmp_path / "run" / "finetune" / "model.pt", dictionary=dictionary)
    result = run_w2vrun_process("export", tmp_path / "run", "--to", "hf", tmp_path / "hf")
    assert_clean_user_error(result, "cannot export", *named, "docs/interop.md")
    assert not (tmp_path / "hf").exists()


def test_a_non_empty_directory_needs_overwrite(ctc_export, tmp_path):
    root, _ = ctc_export
    (tmp_path / "notes.txt").write_text("keep me")
    result = run_w2vrun_process("export", root / "run", "--to", "hf", tmp_path)
    assert_clean_user_error(result, str(tmp_path), "--overwrite")
    result = run_w2vrun_process("export", root / "run", "--to", "hf", tmp_path, "--overwrite")
    assert result.code == 0, result.err
    assert (tmp_path / "vocab.json").exists() and (tmp_path / "notes.txt").exists()


@pytest.mark.parametrize("symbols, frames", [
    (LETTERS, "T T <s> E E N | | A <s> T E |"),
    (["AA", "B", "CH"], "AA AA <s> B <s> B CH CH"),      # phones: no word delimiter
])
def test_tokenizer_decodes_frames_as_w2v_greedy_does(tmp_path, symbols, frames):
    """Hugging Face's tokenizer of a dictionary gives w2v's greedy text of the same frames
    (CTC collapse, blank dropped; letters joined into words, phones separated by spaces)."""
    from transformers import AutoTokenizer

    from w2v.data.dictionary import Dictionary
    from w2v.plugins.ctc.decoders import CTCGreedyDecoder
    from w2v.plugins.wav2vec2.interop.hf_tokenizer import write_tokenizer

    dictionary = Dictionary.from_symbols(symbols)
    write_tokenizer(dictionary, tmp_path)
    ids = dictionary.encode(frames.split())
    emissions = torch.full((1, len(ids), len(dictionary)), -10.0)
    emissions[0, torch.arange(len(ids)), torch.tensor(ids)] = 0.0
    decoder = CTCGreedyDecoder(CTCGreedyDecoder.Config(), dictionary)
    greedy = decoder.decode(emissions, torch.tensor([len(ids)]))[0].text
    assert AutoTokenizer.from_pretrained(tmp_path).decode(ids) == greedy
    assert greedy in ("TEN ATE", "AA B B CH")
