"""``SpeechModel.forward``: the one chain every objective, ``extract_features`` and CTC
emissions use. Quantizer placement (targets / input / both / none) is the model's business,
tested here once; masks come from the model's masker, with per-call settings; and
``extract_features`` takes a batch, one waveform, audio files or a list (issue 12 item 4)."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch

from w2v.build import ModelConfig, build_model
from w2v.config.structure import structure
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Batch

RATE = 16000
MODEL = {
    "encoder": {"name": "wav2vec2_conv", "conv_layers": [[16, 10, 5], [16, 3, 2], [16, 2, 2]],
                "mode": "layer_norm"},
    "quantizer": {"name": "gumbel", "groups": 2, "num_vars": 8, "dim": 8},
    "aggregator": {"name": "transformer", "embed_dim": 16, "layers": 2, "ffn_dim": 32,
                   "heads": 2, "conv_pos": 4, "conv_pos_groups": 2},
    "masker": {"name": "span", "mask_prob": 0.5, "mask_length": 2},
}


def model_for(quantize: str = "targets", **changes):
    torch.manual_seed(0)
    raw = {**MODEL, "quantize": quantize, **changes}
    return build_model(structure(raw, ModelConfig, path=("model",)), RATE).eval()


def waves(B: int = 2, S: int = 800) -> torch.Tensor:
    return torch.randn(B, S, generator=torch.Generator().manual_seed(1))


def quantizer_runs(model) -> list[tuple]:
    """Records the input shape of every quantizer call."""
    runs = []
    model.quantizer.register_forward_hook(lambda m, args, out: runs.append(tuple(args[0].shape)))
    return runs


@pytest.mark.parametrize("targets", ["masked", "all"])
@pytest.mark.parametrize("quantize", ["targets", "input", "both", "none"])
def test_quantizer_placement_decides_what_is_quantized(quantize, targets):
    model = model_for(quantize)
    runs = quantizer_runs(model)
    x = waves()
    with torch.no_grad():
        out = model(Batch(source=x), mask=True, targets=targets)
        runs = list(runs)
        local = model.encode(x).features
    B, T, C = local.shape
    M = int(out.mask.sum())
    assert out.mask.shape == (B, T) and M > 0
    expected_targets = local[out.mask] if targets == "masked" else local
    torch.testing.assert_close(out.targets, expected_targets)
    # the input side: code vectors feed the aggregator only when wired to the input
    if quantize in ("input", "both"):
        torch.testing.assert_close(out.quantized_input.vectors, model.quantizer(local).vectors)
    else:
        assert out.quantized_input is None
    # the target side: code vectors of exactly the target frames, when wired to the targets
    if quantize in ("targets", "both"):
        assert out.quantized_targets is not None
        assert out.target_vectors.shape == expected_targets.shape[:-1] + (8,)
    else:
        assert out.quantized_targets is None and out.target_vectors is out.targets
    assert out.target_vectors.shape[-1] == model.target_signal().dim
    # runs: wav2vec 2.0 quantizes the masked targets on their own; over every frame, one
    # run serves both sides (vq-wav2vec)
    expected_runs = {("targets", "masked"): [(1, M, C)], ("targets", "all"): [(B, T, C)],
                     ("input", "masked"): [(B, T, C)], ("input", "all"): [(B, T, C)],
                     ("both", "masked"): [(B, T, C), (1, M, C)], ("both", "all"): [(B, T, C)],
                     ("none", "masked"): [], ("none", "all"): []}[(quantize, targets)]
    assert runs == expected_runs
    assert len(out.quantized) == len(expected_runs)
    if (quantize, targets) == ("both", "all"):
        assert out.quantized_input is out.quantized_targets


def test_masks_come_from_the_masker_with_per_call_settings():
    model = model_for()
    x = waves()
    with torch.no_grad():
        plain = model(x)
        assert plain.mask is None and plain.targets is None and plain.quantized == []
        nothing = model(x, mask={"mask_prob": 0.0})                  # a fine-tuning override
        assert not nothing.mask.any()
        torch.testing.assert_close(nothing.context, plain.context)  # no channel masks either
        given = torch.zeros_like(nothing.mask)
        given[:, 1:3] = True
        masked = model(x, mask=given)
    assert model.masker.config.mask_prob == 0.5                     # the config never changes
    assert torch.equal(masked.mask, given)
    assert not torch.allclose(masked.context, plain.context)
    with pytest.raises(FitError, match="mask_span"):
        model(x, mask={"mask_span": 3})
    with pytest.raises(ConfigError, match=r"\[B, T\]"):
        model(x, mask=given[:, :-1])
    with pytest.raises(FitError, match="no masker"):
        model_for(masker=None)(x, mask=True)


def test_extract_features_is_the_forward_without_mask():
    model = model_for("both")
    x = waves()
    lengths = torch.tensor([800, 600])
    with torch.no_grad():
        feats = model.extract_features(x, lengths, layers=0)
        out = model(Batch(source=x, lengths=lengths), layers=0)
    torch.testing.assert_close(feats.output, out.context)
    torch.testing.assert_close(feats.local, out.local)
    assert torch.equal(feats.lengths, model.encoder.output_lengths(lengths))
    assert len(feats.layers) == 1 and out.mask is None


def test_head_logits_come_with_the_forward(tmp_path):
    from w2v.data.dictionary import Dictionary

    letters = Dictionary.from_symbols(list("|ABC"))
    raw = {**MODEL, "quantize": "none", "quantizer": None, "head": {"name": "ctc"}}
    model = build_model(structure(raw, ModelConfig, path=("model",)), RATE,
                        dictionary=letters).eval()
    with torch.no_grad():
        out = model(waves())
        assert out.logits.shape == out.context.shape[:2] + (len(letters),)
        torch.testing.assert_close(out.logits, model.head(out.context))


def test_extract_features_accepts_a_path_a_waveform_a_batch_or_a_list(tmp_path):
    model = model_for()
    x = waves(2, 800)
    short = x[1, :560]
    path = tmp_path / "a.wav"
    sf.write(str(path), x[0].numpy(), RATE, subtype="FLOAT")
    with torch.no_grad():
        batch = model.extract_features(x)
        one = model.extract_features(x[0])                    # [S]: a batch of one
        from_file = model.extract_features(path)              # read at the model's rate
        from_str = model.extract_features(str(path))
        listed = model.extract_features([path, x[1]])         # equal lengths: no padding
        ragged = model.extract_features([x[0], short])        # padded, lengths returned
        alone = model.extract_features(short)
        numpy_wave = model.extract_features(x[0].numpy())
    assert one.output.shape == (1,) + batch.output.shape[1:] and one.lengths is None
    torch.testing.assert_close(one.output[0], batch.output[0])
    torch.testing.assert_close(from_file.output, one.output)
    torch.testing.assert_close(from_str.output, one.output)
    torch.testing.assert_close(numpy_wave.output, one.output)
    torch.testing.assert_close(listed.output, batch.output)
    assert listed.lengths is None
    n = int(model.encoder.output_lengths(torch.tensor([560]))[0])
    assert ragged.lengths.tolist() == [batch.output.shape[1], n]
    torch.testing.assert_close(ragged.output[0], batch.output[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ragged.output[1, :n], alone.output[0], atol=1e-5, rtol=1e-4)


def test_extract_features_names_the_expected_and_found_shape(tmp_path):
    model = model_for()
    with pytest.raises(ConfigError, match=r"expected one utterance \[S\], a batch \[B, S\].*"
                                          r"found shape \[2, 1, 800\]"):
        model.extract_features(waves()[:, None])
    with pytest.raises(ConfigError, match=r"list item.*found shape \[2, 800\]"):
        model.extract_features([waves(), waves()[0]])
    with pytest.raises(ConfigError, match="found shape \\[\\]"):
        model.extract_features(torch.tensor(1.0))
    with pytest.raises(ConfigError, match="lengths"):
        model.extract_features([waves()[0]], torch.tensor([800]))
    with pytest.raises(ConfigError, match="empty list"):
        model.extract_features([])
