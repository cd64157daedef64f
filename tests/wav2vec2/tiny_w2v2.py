"""A tiny wav2vec 2.0 pretraining setup (real components, imported from a seeded Hugging Face
config) shared by the tests that compare optimised and reference paths."""

from __future__ import annotations

import torch

from w2v.interfaces import Batch


def tiny_pretraining(seed: int = 0, *, layers: int = 2, dropout: float = 0.0, **objective):
    """``(model, objective)``: conv encoder (3 blocks), ``layers`` post-LN blocks of width 32,
    Gumbel targets, the masked contrastive objective (``objective`` overrides its config)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    from w2v.plugins.wav2vec2.interop import from_hf
    from w2v.plugins.wav2vec2.objective import MaskedContrastiveConfig, MaskedContrastiveObjective

    cfg = Wav2Vec2Config(
        conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3), conv_bias=False,
        feat_extract_norm="group", hidden_size=32, num_hidden_layers=layers,
        num_attention_heads=4, intermediate_size=64, num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4, codevector_dim=16, proj_codevector_dim=12,
        num_codevector_groups=2, num_codevectors_per_group=8, num_negatives=5,
        hidden_dropout=dropout, attention_dropout=dropout, activation_dropout=0.0,
        feat_proj_dropout=dropout, feat_quantizer_dropout=0.0, layerdrop=0.0,
        mask_time_prob=0.5, mask_time_length=3, mask_time_min_masks=2)
    torch.manual_seed(seed)
    hf = Wav2Vec2ForPreTraining(cfg)
    model = from_hf((cfg, hf.state_dict()))
    report = model.load_report
    config = MaskedContrastiveConfig(**{**report.objective_config, "contrastive_loss": None,
                                        **objective})
    obj = MaskedContrastiveObjective.from_config(config, model.context_signal(), model=model)
    obj.load_state_dict(report.objective_state, strict=False)
    return model, obj


def waves(B: int = 3, S: int = 1600, seed: int = 1, lengths=None) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(source=torch.randn(B, S, generator=g),
                 lengths=None if lengths is None else torch.as_tensor(lengths))


def loss_and_grads(model, obj, batch: Batch, seed: int = 7):
    """The objective's loss and every parameter's gradient (by name) of one seeded step."""
    for m in (model, obj):
        m.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = obj(batch, model)
    out.loss.backward()
    grads = {f"{tag}.{n}": p.grad.clone() for tag, m in (("model", model), ("objective", obj))
             for n, p in m.named_parameters() if p.grad is not None}
    return out, grads


def assert_same_step(a, b, *, rtol: float = 1e-5) -> None:
    """Two ``loss_and_grads`` results agree: the loss to ``rtol`` and every gradient to
    ``rtol`` relative to its norm (sums of rounding differences scale with the norm)."""
    (out_a, g_a), (out_b, g_b) = a, b
    torch.testing.assert_close(out_a.loss, out_b.loss, rtol=rtol, atol=0.0)
    assert out_a.sample_size == out_b.sample_size
    assert sorted(g_a) == sorted(g_b)
    for name in g_a:
        err = float((g_a[name] - g_b[name]).norm() / g_b[name].norm().clamp(min=1e-30))
        assert err <= rtol, f"{name}: gradients differ by {err:.1e} (relative norm)"
