"""torchaudio interop: random-init ``torchaudio.models.wav2vec2_model`` imported into w2v gives
the same intermediate layers, output and CTC emissions."""

from __future__ import annotations

import pytest
import torch

from w2v.errors import UserError
from w2v.plugins.wav2vec2.interop import from_torchaudio

torchaudio = pytest.importorskip("torchaudio")
torch.set_num_threads(1)
TOL = dict(atol=1e-4, rtol=0)


def kwargs(large: bool) -> dict:
    return dict(
        extractor_mode="layer_norm" if large else "group_norm",
        extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2), (24, 2, 2)],
        extractor_conv_bias=large, encoder_embed_dim=32, encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=8, encoder_pos_conv_groups=4, encoder_num_layers=2,
        encoder_num_heads=4, encoder_attention_dropout=0.1, encoder_ff_interm_features=64,
        encoder_ff_interm_dropout=0.0, encoder_dropout=0.1, encoder_layer_norm_first=large,
        encoder_layer_drop=0.05, aux_num_out=6 if large else None)


def make(large: bool):
    torch.manual_seed(0)
    model = torchaudio.models.wav2vec2_model(**kwargs(large)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def compare(ta, model, wave, lengths=None):
    with torch.no_grad():
        ref_layers, ref_lengths = ta.extract_features(wave, lengths)
        ref_out, _ = ta(wave, lengths)
        ours = model.extract_features(wave, lengths)
        out = model.head(ours.output) if model.head is not None else ours.output
    t = ours.local.shape[1] if lengths is None else int(ours.lengths.min())
    if lengths is not None:
        assert torch.equal(ours.lengths, ref_lengths)
    assert len(ours.layers) == len(ref_layers)
    for a, b in zip(ours.layers, ref_layers):
        torch.testing.assert_close(a[:, :t], b[:, :t], **TOL)
    torch.testing.assert_close(out[:, :t], ref_out[:, :t], **TOL)


@pytest.mark.parametrize("large", [False, True], ids=["base", "large"])
def test_module_import_matches(large):
    ta = make(large)
    model = from_torchaudio(ta)
    assert model.aggregator.config.layer_norm_first is large
    assert model.aggregator.config.heads == 4 and model.aggregator.config.layerdrop == 0.05
    compare(ta, model, torch.randn(2, 1600))
    assert not model.load_report.missing and not model.load_report.dropped


def test_state_dict_import_with_kwargs_and_padding():
    ta = make(True)
    model = from_torchaudio(ta.state_dict(), kwargs(True))
    assert model.head.proj.out_features == 6
    compare(ta, model, torch.randn(2, 1600), torch.tensor([1600, 1200]))


def test_bad_kwargs_and_keys_raise():
    ta = make(False)
    with pytest.raises(UserError, match="encoder_num_head"):
        from_torchaudio(ta.state_dict(), {**kwargs(False), "encoder_num_head": 4})
    state = {**ta.state_dict(), "encoder.transformer.extra.weight": torch.zeros(2)}
    with pytest.raises(UserError, match="encoder.transformer.extra.weight"):
        from_torchaudio(state, kwargs(False))
    wrong = {**kwargs(False), "encoder_num_layers": 3}        # config and tensors disagree
    with pytest.raises(UserError, match="lacks 12 tensors .*aggregator.layers.2"):
        from_torchaudio(ta.state_dict(), wrong)
