"""Unit export in fairseq's vq-wav2vec_featurize format: the tokens are the model's codes."""

from __future__ import annotations

import json

import pytest
import torch

from w2v.build import ModelConfig, build_model
from w2v.config.structure import structure
from w2v.data.dictionary import Dictionary
from w2v.errors import ConfigError
from w2v.plugins.features.units import (codes_to_tokens, export_units, quantize_wave,
                                       tokens_to_codes, unit_dictionary)

torch.set_num_threads(1)

ENCODER = [[16, 10, 5], [16, 8, 4], [16, 4, 2], [16, 4, 2], [16, 4, 2]]     # RF 465, stride 160


def vq_model(quantizer: str = "gumbel", **model):
    torch.manual_seed(0)
    q = {"name": "gumbel", "groups": 2, "num_vars": 8} if quantizer == "gumbel" else \
        {"name": "kmeans", "groups": 2, "num_vars": 8}
    section = {"encoder": {"name": "wav2vec_conv", "layers": ENCODER},
               "quantizer": q, "aggregator": {"name": "wav2vec_conv_aggregator",
                                              "layers": [[16, 3, 1]]},
               "quantize": "both", **model}
    cfg = structure(section, ModelConfig, path=("model",))
    return build_model(cfg).eval(), cfg


def test_token_format_round_trip():
    codes = torch.tensor([[3, 17], [0, 319], [3, 17]])
    tokens = codes_to_tokens(codes)
    assert tokens == ["3-17", "0-319", "3-17"]
    assert torch.equal(tokens_to_codes(tokens, 2), codes)
    with pytest.raises(ValueError, match="not a unit"):
        tokens_to_codes(["3-17-2"], 2)
    d = unit_dictionary([" ".join(tokens), "0-319 5-5"])
    assert d.symbols[4:] == ["0-319", "3-17", "5-5"]          # by count, ties by symbol
    assert d.counts[4:] == [2, 2, 1]


@pytest.mark.parametrize("quantizer", ["gumbel", "kmeans"])
def test_export_writes_the_models_codes_line_by_line(tmp_path, audio_manifest, quantizer):
    manifest, waves = audio_manifest
    model, _ = vq_model(quantizer)
    meta = export_units(model, {"train": str(manifest)}, tmp_path / "units")
    out = tmp_path / "units"
    lines = (out / "train.src").read_text().splitlines()
    assert len(lines) == len(waves) == meta["splits"]["train"]["utterances"]
    assert lines[2] == "" and meta["splits"]["train"]["empty"] == 1      # 300 samples < RF 465
    with torch.no_grad():
        for line, wave in zip(lines, waves):
            if len(wave) < 465:
                continue
            expected = model.quantize(torch.from_numpy(wave)[None])[0]
            assert torch.equal(tokens_to_codes(line.split(), 2), expected)
    assert (out / "train.tsv").read_text() == manifest.read_text()
    d = Dictionary.load(out / "dict.src.txt")
    for line in lines:                                       # tokens -> ids -> tokens
        ids = d.encode(line.split(), strict=True)
        assert d.string(ids) == line
    counts = d.counts[d.nspecial:]
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == meta["splits"]["train"]["tokens"]
    assert json.loads((out / "units.json").read_text())["stride"] == 160


def test_long_files_are_quantized_in_chunks(audio_manifest):
    _, waves = audio_manifest
    model, _ = vq_model()
    wave = torch.from_numpy(waves[3])                        # 4800 samples
    codes = quantize_wave(model, wave, chunk=2000)           # chunks 2000, 2000, 800
    with torch.no_grad():
        parts = [model.quantize(wave[s:s + 2000][None])[0] for s in (0, 2000, 4000)]
    assert torch.equal(codes, torch.cat(parts))
    assert codes.shape[0] != quantize_wave(model, wave, chunk=10_000).shape[0]


def test_a_model_without_quantizer_has_no_units(audio_manifest, tmp_path):
    model, _ = vq_model()
    model.quantizer = None
    with pytest.raises(ConfigError, match="no quantizer"):
        export_units(model, {"train": str(audio_manifest[0])}, tmp_path / "u")


def test_export_units_command(tmp_path, audio_manifest, run_cli):
    from w2v.checkpoint_formats import save_model

    model, cfg = vq_model()
    path = save_model(model, cfg, tmp_path / "model.pt")
    result = run_cli("export-units", path, audio_manifest[0], "--out", tmp_path / "cli",
                     "--device", "cpu")
    assert result.code == 0, result.err
    assert len((tmp_path / "cli" / "train.src").read_text().splitlines()) == 4
    assert (tmp_path / "cli" / "dict.src.txt").exists()


def test_export_units_command_user_errors_exit_2(tmp_path, audio_manifest, run_cli):
    from w2v.checkpoint_formats import save_model

    cfg = structure({"encoder": {"name": "wav2vec_conv", "layers": ENCODER},
                     "aggregator": {"name": "wav2vec_conv_aggregator", "layers": [[16, 3, 1]]}},
                    ModelConfig, path=("model",))
    path = save_model(build_model(cfg), cfg, tmp_path / "plain.pt")
    result = run_cli("export-units", path, audio_manifest[0], "--out", tmp_path / "o",
                     "--device", "cpu")
    assert result.code == 2 and "no quantizer" in result.err and "Traceback" not in result.err
    result = run_cli("export-units", tmp_path / "missing.pt", audio_manifest[0], "--out",
                     tmp_path / "o")
    assert result.code == 2 and "does not exist" in result.err
