"""Log-mel front end: Kaldi parity, CMVN, padding invariance, signal and registration."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from w2v.config.structure import structure_component
from w2v.errors import ConfigError, FitError
from w2v.interfaces import Signal, waveform_signal
from w2v.plugins.frontends.logmel import LogMelEncoder, masked_cmvn

torch.set_num_threads(1)


def chirp_wav(path, seconds=0.5, sample_rate=16000, seed=0):
    """A chirp with noise, written as 16-bit PCM and read back as float."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = 0.5 * np.sin(2 * np.pi * (200 + 3000 * t) * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, wave, sample_rate, subtype="PCM_16")
    data, rate = sf.read(path, dtype="float32")
    assert rate == sample_rate
    return torch.from_numpy(data)


def test_matches_torchaudio_kaldi_fbank_on_a_wav_file(tmp_path):
    waves = [chirp_wav(tmp_path / f"{i}.wav", seconds=s, seed=i)
             for i, s in enumerate([0.5, 0.37])]
    enc = LogMelEncoder(LogMelEncoder.Config(cmvn=False))
    batch = torch.zeros(2, waves[0].numel())
    for i, w in enumerate(waves):
        batch[i, :w.numel()] = w
    out = enc(batch, torch.tensor([w.numel() for w in waves]))
    for i, w in enumerate(waves):
        ref = torchaudio.compliance.kaldi.fbank(w[None], num_mel_bins=80, sample_frequency=16000)
        n = ref.shape[0]
        assert int(out.lengths[i]) == n
        assert torch.allclose(out.features[i, :n], ref, atol=2e-3), \
            (out.features[i, :n] - ref).abs().max()
        assert torch.count_nonzero(out.features[i, n:]) == 0


def test_cmvn_gives_zero_mean_unit_variance_over_valid_frames(tmp_path):
    wave = chirp_wav(tmp_path / "a.wav")
    batch = torch.zeros(2, wave.numel())
    batch[0], batch[1, :5000] = wave, wave[:5000] * 3.0
    out = LogMelEncoder(LogMelEncoder.Config(cmvn=True))(batch, torch.tensor([wave.numel(), 5000]))
    for i, n in enumerate(out.lengths.tolist()):
        valid = out.features[i, :n]
        assert torch.allclose(valid.mean(0), torch.zeros(80), atol=1e-4)
        assert torch.allclose(valid.var(0, unbiased=False), torch.ones(80), atol=1e-3)
        assert torch.count_nonzero(out.features[i, n:]) == 0


def test_utterance_alone_and_padded_give_the_same_valid_frames(tmp_path):
    torch.manual_seed(0)
    enc = LogMelEncoder(LogMelEncoder.Config(cmvn=True, dim=16))
    wave = chirp_wav(tmp_path / "a.wav", seconds=0.3)
    alone = enc(wave[None]).features[0]
    padded = torch.cat([wave, torch.randn(2000)])[None]                 # junk after the end
    out = enc(padded, torch.tensor([wave.numel()]))
    assert out.features.shape[1] > alone.shape[0] == int(out.lengths[0])
    assert torch.allclose(out.features[0, :alone.shape[0]], alone, atol=1e-5)


def test_masked_cmvn_ignores_padding_values():
    x = torch.randn(1, 6, 3)
    a = masked_cmvn(x, torch.tensor([4]))
    x[:, 4:] = 100.0
    assert torch.allclose(masked_cmvn(x, torch.tensor([4])), a)


def test_signal_and_lengths():
    enc = LogMelEncoder(LogMelEncoder.Config(cmvn=True))
    sig = enc.produces()
    assert (sig.kind, sig.dim, sig.stride, sig.receptive_field, sig.causal) == \
        ("frames", 80, 160, 400, False)
    assert LogMelEncoder(LogMelEncoder.Config(cmvn=False, dim=32)).produces().causal
    assert LogMelEncoder(LogMelEncoder.Config(dim=32)).produces().dim == 32
    for n in [0, 399, 400, 559, 560, 16000]:
        frames = enc(torch.randn(1, n)).features.shape[1]
        assert int(enc.output_lengths(torch.tensor([n]))) == frames


def test_parameters_only_with_a_projection():
    assert not list(LogMelEncoder(LogMelEncoder.Config()).parameters())
    projected = LogMelEncoder(LogMelEncoder.Config(dim=8))
    assert sum(p.numel() for p in projected.parameters()) == 80 * 8 + 8


def test_built_from_a_yaml_section():
    spec = structure_component("encoder", {"name": "logmel", "num_mel_bins": 40, "cmvn": False})
    enc = spec.build(waveform_signal(16000))
    assert enc.produces().dim == 40 and enc(torch.randn(2, 800)).features.shape == (2, 3, 40)
    with pytest.raises(ConfigError) as info:
        structure_component("encoder", {"name": "logmel", "cmnv": True}, path="model.encoder")
    assert "model.encoder.cmnv" in str(info.value) and "cmvn" in str(info.value)
    with pytest.raises(FitError, match="raw audio"):
        spec.build(Signal(kind="frames", dim=80))


def test_mfcc_matches_kaldi_mfcc_with_hubert_deltas():
    import torchaudio

    from w2v.plugins.frontends.mfcc import MfccConfig, MfccEncoder

    torch.manual_seed(0)
    wave = torch.randn(2, 16000) * 0.1
    enc = MfccEncoder(MfccConfig())
    out = enc(wave, torch.tensor([16000, 12000]))
    for b, n in enumerate([16000, 12000]):
        ref = torchaudio.compliance.kaldi.mfcc(wave[b:b + 1, :n], sample_frequency=16000,
                                               use_energy=False)
        d1 = torchaudio.functional.compute_deltas(ref.T)
        d2 = torchaudio.functional.compute_deltas(d1)
        ref = torch.cat([ref, d1.T, d2.T], -1)
        assert out.lengths[b] == ref.shape[0]
        torch.testing.assert_close(out.features[b, :ref.shape[0]], ref, atol=2e-3, rtol=1e-3)
        assert torch.all(out.features[b, ref.shape[0]:] == 0)
    assert out.features.shape[-1] == 39
