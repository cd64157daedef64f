"""fairseq wav2vec 1.0 / vq-wav2vec import without fairseq.

The fake checkpoints come from small modules laid out as fairseq's
``Wav2VecModel`` is (``feature_extractor.conv_layers.i`` = Sequential(Conv1d,
Dropout, GroupNorm, act), the aggregator's (pad, Conv1d, Dropout, GroupNorm,
act) blocks, ``vector_quantizer``, ``wav2vec_predictions.project_to_steps`` =
ConvTranspose2d), written here from fairseq's documented semantics. Their
state dicts carry fairseq's key names by construction; their forward passes are
the reference the imported w2v model must match.
"""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import w2v
from w2v.errors import UserError
from w2v.plugins.wav2vec.interop import (detect_fairseq_wav2vec, from_fairseq_wav2vec,
                                         objective_from_report)

torch.set_num_threads(1)

ENC = [(16, 10, 5), (16, 8, 4), (16, 1, 1)]
AGG = [(16, 2, 1), (24, 3, 1), (24, 4, 1)]
K = 3


class FsEncoder(nn.Module):
    def __init__(self, layers, act):
        super().__init__()
        self.conv_layers = nn.ModuleList()
        in_d = 1
        for d, k, s in layers:
            self.conv_layers.append(nn.Sequential(nn.Conv1d(in_d, d, k, stride=s, bias=False),
                                                  nn.Dropout(0.0), nn.GroupNorm(1, d), act))
            in_d = d

    def forward(self, wave):                       # [B, S] -> [B, C, T]
        x = wave[:, None]
        for block in self.conv_layers:
            x = block(x)
        return torch.log(x.abs() + 1)


class FsAggregator(nn.Module):
    def __init__(self, layers, embed, act):
        super().__init__()
        blocks, projs, in_d = [], nn.ModuleList(), embed
        for d, k, _ in layers:
            projs.append(nn.Conv1d(in_d, d, 1, bias=False) if in_d != d else None)
            blocks.append(nn.Sequential(nn.ReplicationPad1d((k - 1, 0)), nn.Conv1d(in_d, d, k),
                                        nn.Dropout(0.0), nn.GroupNorm(1, d), act))
            in_d = d
        self.conv_layers = nn.Sequential(*blocks)
        self.residual_proj = projs

    def forward(self, x):                          # [B, C, T] -> [B, D, T]
        for proj, block in zip(self.residual_proj, self.conv_layers):
            residual = x if proj is None else proj(x)
            x = (block(x) + residual) * math.sqrt(0.5)
        return x


class FsGumbel(nn.Module):
    """Eval-mode Gumbel quantizer: argmax code per group, combined codebook, depth-2 projection."""

    def __init__(self, dim, groups, num_vars, act):
        super().__init__()
        self.groups, self.num_vars = groups, num_vars
        self.vars = nn.Parameter(torch.rand(1, num_vars, dim // groups))       # combine_groups
        self.weight_proj = nn.Sequential(nn.Sequential(nn.Linear(dim, 2 * dim), act),
                                         nn.Linear(2 * dim, groups * num_vars))

    def forward(self, z):                          # [B, C, T] -> ([B, C, T], codes [B, T, G])
        B, C, T = z.shape
        logits = self.weight_proj(z.transpose(1, 2)).view(B, T, self.groups, self.num_vars)
        codes = logits.argmax(-1)
        book = self.vars.view(self.num_vars, -1)
        return book[codes].reshape(B, T, C).transpose(1, 2), codes


class FsKmeans(nn.Module):
    def __init__(self, dim, groups, num_vars):
        super().__init__()
        self.groups = groups
        self.embedding = nn.Parameter(0.5 * torch.randn(num_vars, groups, dim // groups))
        self.projection = nn.Sequential(nn.Conv1d(dim, dim, 1, groups=groups, bias=False),
                                        nn.GroupNorm(groups, dim))

    def forward(self, z):
        B, C, T = z.shape
        ze = self.projection(z).transpose(1, 2).reshape(B, T, self.groups, -1)
        dist = (ze[:, :, :, None] - self.embedding.permute(1, 0, 2)[None, None]).norm(dim=-1)
        codes = dist.argmin(-1)                                                 # [B, T, G]
        zq = self.embedding[codes, torch.arange(self.groups)]                   # [B, T, G, d]
        return zq.reshape(B, T, C).transpose(1, 2), codes


class FsWav2Vec(nn.Module):
    def __init__(self, vq=None):
        super().__init__()
        act = nn.GELU() if vq == "gumbel" else nn.ReLU()
        self.feature_extractor = FsEncoder(ENC, act)
        if vq == "gumbel":
            self.vector_quantizer = FsGumbel(16, 2, 6, act)
        elif vq == "kmeans":
            self.vector_quantizer = FsKmeans(16, 2, 6)
        else:
            self.vector_quantizer = None
        self.feature_aggregator = FsAggregator(AGG, 16, act)
        self.wav2vec_predictions = nn.Module()
        self.wav2vec_predictions.project_to_steps = nn.ConvTranspose2d(24, 16, (1, K))
        for name, p in self.named_parameters():          # no unit GroupNorm weights
            if ".2." in name or ".3." in name or "projection.1" in name:
                with torch.no_grad():
                    p.add_(0.3 * torch.randn_like(p))

    def forward(self, wave):
        z = self.feature_extractor(wave)
        codes = None
        if self.vector_quantizer is not None:
            z, codes = self.vector_quantizer(z)
        c = self.feature_aggregator(z)
        steps = self.wav2vec_predictions.project_to_steps(c[..., None])        # [B, Dz, T, K]
        return z, c, codes, steps


def args_for(vq=None, **extra):
    return argparse.Namespace(
        arch="wav2vec", conv_feature_layers=str(ENC), conv_aggregator_layers=str(AGG),
        prediction_steps=K, num_negatives=7, activation="gelu" if vq == "gumbel" else "relu",
        vq_type=vq or "none", vq_groups=2, vq_vars=6, vq_depth=2, combine_groups=vq == "gumbel",
        vq_temp="(2.0, 0.5, 0.999995)", vq_gamma=0.25, infonce=False, sample_rate=16000,
        offset="auto", **extra)


def fake_checkpoint(tmp_path, vq=None, *, cfg=False, **extra):
    torch.manual_seed(0)
    ref = FsWav2Vec(vq).eval()
    ckpt = {"model": ref.state_dict(), "optimizer_history": [], "extra_state": {}}
    if cfg:
        model = {k: v for k, v in vars(args_for(vq, **extra)).items() if k != "arch"}
        ckpt["cfg"] = {"model": {"_name": "wav2vec", **model, "infonce": "${criterion.infonce}"},
                       "task": {"_name": "audio_pretraining", "sample_rate": 16000},
                       "criterion": {"_name": "wav2vec", "infonce": False,
                                     "loss_weights": [1.0]}}
    else:
        ckpt["args"] = args_for(vq, **extra)
    path = tmp_path / f"wav2vec_{vq}.pt"
    torch.save(ckpt, path)
    return ref, path


@pytest.mark.parametrize("vq", [None, "gumbel", "kmeans"])
def test_imported_model_matches_the_fairseq_layout_forward(tmp_path, vq):
    ref, path = fake_checkpoint(tmp_path, vq)
    assert detect_fairseq_wav2vec(path)
    model = w2v.load_pretrained(path)                 # auto-detected
    assert model.load_report.missing == []
    wave = torch.randn(2, 3000)
    with torch.no_grad():
        z, c, codes, steps = ref(wave)
        feats = model.extract_features(wave)
    torch.testing.assert_close(feats.output, c.transpose(1, 2), atol=1e-5, rtol=1e-4)
    if vq is not None:
        assert model.quantize_where == "both"
        assert torch.equal(model.quantize(wave), codes)
    else:
        torch.testing.assert_close(feats.local, z.transpose(1, 2), atol=1e-5, rtol=1e-4)
    objective = objective_from_report(model)
    assert objective.head.steps == K and objective.offset_for(model) == math.ceil(
        (10 + 7 * 5) / 20)
    with torch.no_grad():
        ours = objective.head(feats.output)                                     # [B, T, K, Dz]
    torch.testing.assert_close(ours, steps.permute(0, 2, 3, 1), atol=1e-5, rtol=1e-4)


def test_cfg_dict_checkpoint_with_interpolations_and_loss_weights(tmp_path):
    _, path = fake_checkpoint(tmp_path, "kmeans", cfg=True)
    model = from_fairseq_wav2vec(path)
    report = model.load_report
    assert report.objective_config["infonce"] is False            # ${criterion.infonce} resolved
    assert report.objective_config["aux_loss_weight"] == 1.0      # loss_weights [1] -> k-means
    assert report.objective_config["num_negatives"] == 7
    assert model.model_config.quantizer.name == "kmeans"


def test_saved_as_w2v_and_reloaded(tmp_path):
    from w2v.checkpoint_formats import save_model

    _, path = fake_checkpoint(tmp_path, "gumbel")
    model = from_fairseq_wav2vec(path)
    out = save_model(model, model.model_config, tmp_path / "model.pt")
    again = w2v.load_pretrained(out)
    wave = torch.randn(1, 2000)
    with torch.no_grad():
        torch.testing.assert_close(again.extract_features(wave).output,
                                   model.extract_features(wave).output)


def test_wav2vec2_checkpoints_are_not_claimed_and_unknown_keys_stop(tmp_path):
    v2 = tmp_path / "v2.pt"
    torch.save({"cfg": {"model": {"_name": "wav2vec2"}},
                "model": {"feature_extractor.conv_layers.0.0.weight": torch.zeros(1),
                          "encoder.pos_conv.0.bias": torch.zeros(1)}}, v2)
    assert not detect_fairseq_wav2vec(v2)
    ref, path = fake_checkpoint(tmp_path)
    ckpt = torch.load(path, weights_only=False)
    ckpt["model"]["feature_aggregator.mystery.weight"] = torch.zeros(3)
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="mystery"):
        from_fairseq_wav2vec(path)


def test_fairseq_head_bias_is_shared_across_steps(tmp_path):
    from w2v.plugins.wav2vec.interop import step_head_tensors

    w = torch.randn(5, 4, 1, 3)
    b = torch.randn(4)
    t = step_head_tensors(w, b)
    assert t["head.weight"].shape == (3, 5, 4) and torch.equal(t["head.weight"][2], w[:, :, 0, 2])
    assert torch.equal(t["head.bias"], b)                # one bias, as fairseq
    conv = nn.ConvTranspose2d(5, 4, (1, 3))
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
        c = torch.randn(2, 5, 7)
        ref = conv(c[..., None])                                                 # [B, 4, T, 3]
        ours = torch.einsum("bct,kcd->btkd", c, t["head.weight"]) + t["head.bias"]
    torch.testing.assert_close(ours, ref.permute(0, 2, 3, 1))
    assert F.mse_loss(ours, ref.permute(0, 2, 3, 1)) < 1e-10


def test_gru_aggregator_imports_with_fairseq_recurrence_and_equal_outputs(tmp_path):
    """fairseq's `aggregator: gru` (a GRU that is not batch_first, fed [B, T, C]) recurs
    across the batch axis; the import sets `fairseq_compat` so outputs equal fairseq's."""
    torch.manual_seed(0)
    ref = nn.Module()
    ref.feature_extractor = FsEncoder(ENC, nn.ReLU())
    ref.feature_aggregator = nn.Sequential(nn.Identity(), nn.GRU(16, 12), nn.Identity())
    ref.wav2vec_predictions = nn.Module()
    ref.wav2vec_predictions.project_to_steps = nn.ConvTranspose2d(12, 16, (1, K))
    args = args_for(None)
    args.aggregator, args.gru_dim = "gru", 12
    path = tmp_path / "gru.pt"
    torch.save({"model": ref.state_dict(), "args": args}, path)
    model = w2v.load_pretrained(path)
    assert model.load_report.missing == [] and model.model_config.aggregator.name == "gru"
    assert model.model_config.aggregator.config.fairseq_compat
    gru = ref.feature_aggregator[1]
    assert torch.equal(model.aggregator.layers[0].weight_hh_l0, gru.weight_hh_l0)
    wave = torch.randn(2, 3000)
    with torch.no_grad():
        feats = model.extract_features(wave)
        z = ref.feature_extractor(wave).transpose(1, 2)                      # [B, T, C]
        fairseq_out = gru(z)[0]                                              # over the batch axis
        over_time = nn.GRU(16, 12, batch_first=True)
        over_time.load_state_dict(gru.state_dict())
        w2v_default = over_time(z)[0]
    torch.testing.assert_close(feats.local, z, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(feats.output, fairseq_out, atol=1e-5, rtol=1e-4)
    assert (feats.output - w2v_default).abs().max() > 1e-2     # the recurrences differ
    assert objective_from_report(model).head.context_dim == 12
