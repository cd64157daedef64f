"""Helpers for the transcribe/evaluate tests (fixtures in ``conftest.py``): a tiny fine-tuned
model built from registered components, trained on the synthetic "spoken letters" task of
``ctc_synthetic`` and saved as a w2v run, plus audio files and a labelled manifest written with
soundfile.

The model (wav2vec 2.0 conv encoder in layer_norm mode, one 16-sample frame per step; a causal
wav2vec 1.0 conv aggregator with per-frame norms; a CTC head) gives each frame from a bounded
window of 5 frames, so chunked decoding with enough context equals unchunked decoding exactly.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import soundfile as sf
import torch
from ctc_synthetic import LETTERS, make_batch, random_texts

MODEL = {
    "encoder": {"name": "wav2vec2_conv", "conv_layers": [[16, 16, 16]], "mode": "layer_norm",
                "conv_bias": True},
    "aggregator": {"name": "wav2vec_conv_aggregator", "layers": [[32, 3, 1], [32, 3, 1]],
                   "norm": "frame"},
    "head": {"name": "ctc"},
    "quantize": "none",
}
RATE = 16000
#: What each test file says (letter labels), and its words.
SPOKEN = {"one.wav": "T E N | A T E |", "two.wav": "N O T E |", "three.wav": "E A T | O N |"}


def words(letters: str) -> str:
    return " ".join(letters.replace(" ", "").replace("|", " ").split())


def say(dictionary, text: str, seed: int) -> torch.Tensor:
    """A waveform ``[S]`` that says ``text`` (letter labels) in the synthetic task's voice."""
    g = torch.Generator().manual_seed(seed)
    batch = make_batch(dictionary, [text], g)
    return batch.source[0, :int(batch.lengths[0])]


def write_wave(path: Path, wave: torch.Tensor) -> Path:
    # float samples: the synthetic tones exceed [-1, 1], which 16-bit PCM would clip
    sf.write(str(path), wave.numpy(), RATE, subtype="FLOAT")
    return path


def build(dictionary, head: bool = True):
    from w2v.build import ModelConfig, build_model
    from w2v.config.structure import structure

    raw = dict(MODEL) if head else {k: v for k, v in MODEL.items() if k != "head"}
    cfg = structure(raw, ModelConfig, path=("model",))
    return build_model(cfg, RATE, dictionary=dictionary if head else None), cfg


def train(model, dictionary, steps: int = 80) -> None:
    from w2v.plugins.ctc.objective import CTCConfig, CTCObjective

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    objective = CTCObjective(CTCConfig(apply_mask=False, wer_valid=False), dictionary)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        out = objective(make_batch(dictionary, random_texts(16, g), g), model, step)
        opt.zero_grad()
        (out.loss / out.sample_size).backward()
        opt.step()
    model.eval()


@attrs.frozen
class CTCRun:
    """What the fixture made: ``checkpoint`` (a w2v run directory with a fine-tuned stage),
    ``pretrained`` (a model.pt without a CTC head), ``audio`` (file name -> path),
    ``manifest`` (test.tsv + test.ltr over ``audio``), ``lm_text`` (disjoint from it)."""

    root: Path
    checkpoint: Path
    pretrained: Path
    audio: dict
    manifest: Path
    lm_text: Path
    dictionary: object


def make_ctc_run(root: Path) -> CTCRun:
    """Train and save the model, write the audio, manifest, labels and LM text under ``root``."""
    from w2v.checkpoint_formats import save_model
    from w2v.data.dictionary import Dictionary

    dictionary = Dictionary.from_symbols(LETTERS)
    model, cfg = build(dictionary)
    train(model, dictionary)
    save_model(model, cfg, root / "run" / "finetune" / "model.pt", dictionary=dictionary)
    bare, bare_cfg = build(None, head=False)
    save_model(bare, bare_cfg, root / "pretrain" / "model.pt")

    audio_dir = root / "audio"
    audio_dir.mkdir()
    audio, lines = {}, []
    for seed, (name, text) in enumerate(SPOKEN.items()):
        wave = say(dictionary, text, seed)
        audio[name] = write_wave(audio_dir / name, wave)
        lines.append(f"{name}\t{wave.shape[0]}")
    manifest = root / "data" / "test.tsv"
    manifest.parent.mkdir()
    manifest.write_text(f"{audio_dir}\n" + "\n".join(lines) + "\n")
    manifest.with_suffix(".ltr").write_text("\n".join(SPOKEN.values()) + "\n")
    lm_text = root / "data" / "lm.txt"
    lm_text.write_text("TEN NOTE EAT\nATE ON TEN\nNOTE ON\nEAT TEN NOTE\n")
    return CTCRun(root=root, checkpoint=root / "run", pretrained=root / "pretrain" / "model.pt",
                  audio=audio, manifest=manifest, lm_text=lm_text, dictionary=dictionary)


def assert_clean_user_error(result, *fragments: str) -> None:
    """Exit 2, one ``w2vrun: error:`` paragraph naming ``fragments``, no traceback."""
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = [line for line in result.err.splitlines() if not line.startswith("[w2v]")]
    assert len(lines) == 1 and lines[0].startswith("w2vrun: error: "), result.err
    for f in fragments:
        assert str(f) in lines[0], f"{f!r} not in {lines[0]!r}"
