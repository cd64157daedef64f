"""KMeansQuantizer: k-means loss by hand, nearest codes, straight-through gradients."""

from __future__ import annotations

import pytest
import torch

from w2v.errors import ConfigError
from w2v.interfaces import Signal
from w2v.plugins.quantizers.kmeans import KMeansQuantizer, KMeansQuantizerConfig

torch.set_num_threads(1)


def identity_quantizer(book: list[list[float]], gamma=0.25) -> KMeansQuantizer:
    """G=1, C=2: identity 1x1 conv, plain group norm, the given two-entry codebook."""
    q = KMeansQuantizer(KMeansQuantizer.Config(groups=1, num_vars=len(book), gamma=gamma), 2)
    with torch.no_grad():
        q.projection[0].weight.copy_(torch.eye(2)[:, :, None])
        q.embedding.copy_(torch.tensor(book)[:, None, :])
    return q


def test_kmeans_loss_codes_and_vectors_computed_by_hand():
    q = identity_quantizer([[0.5, -0.5], [-2.0, 2.0]])
    x = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]])          # group norm keeps it (mean 0, var 1)
    out = q(x)
    assert out.codes.squeeze(-1).tolist() == [[0, 1]]
    assert torch.allclose(out.vectors, torch.tensor([[[0.5, -0.5], [-2.0, 2.0]]]))
    # mse(zq, ze) = (0.25 + 0.25 + 1 + 1) / 4 = 0.625; loss = (1 + gamma) * 0.625
    assert float(out.aux_loss.detach()) == pytest.approx(1.25 * 0.625, abs=1e-4)
    assert float(out.stats["code_perplexity"]) == pytest.approx(2.0, abs=1e-4)


def test_gamma_weights_only_the_commitment_term():
    x = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]])
    q = identity_quantizer([[0.5, -0.5], [-2.0, 2.0]], gamma=0.0)
    out = q(x)
    assert float(out.aux_loss.detach()) == pytest.approx(0.625, abs=1e-4)
    out.aux_loss.backward()   # gamma 0: only the codebook learns from the loss
    assert q.embedding.grad.abs().sum() > 0
    assert q.projection[0].weight.grad is None or q.projection[0].weight.grad.abs().sum() == 0


def test_nearest_code_matches_brute_force():
    torch.manual_seed(0)
    q = KMeansQuantizer(KMeansQuantizer.Config(groups=3, num_vars=7), 12)
    with torch.no_grad():
        q.embedding.normal_()
    x = torch.randn(2, 9, 12)
    out = q(x)
    ze = q.project(x).view(2, 9, 3, 4)
    book = q.embedding                                       # [V, G, d]
    for g in range(3):
        dist = torch.cdist(ze[:, :, g].reshape(-1, 4), book[:, g])
        assert torch.equal(out.codes[..., g].reshape(-1), dist.argmin(-1))
    assert torch.allclose(out.vectors, q.lookup(out.codes))


def test_straight_through_gradient_reaches_the_projection_not_the_codebook():
    torch.manual_seed(1)
    q = KMeansQuantizer(KMeansQuantizer.Config(groups=2, num_vars=5), 8)
    x = torch.randn(2, 6, 8, requires_grad=True)
    out = q(x)
    out.vectors.sum().backward()
    assert q.projection[0].weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    assert q.embedding.grad is None or q.embedding.grad.abs().sum() == 0


def test_codebook_learns_from_the_kmeans_loss():
    torch.manual_seed(2)
    q = KMeansQuantizer(KMeansQuantizer.Config(groups=2, num_vars=4), 8)
    x = torch.randn(3, 20, 8)
    opt = torch.optim.SGD(q.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        loss = q(x).aux_loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(q(x).aux_loss.detach()) < 0.5 * first


def test_padded_frames_do_not_count():
    torch.manual_seed(3)
    q = KMeansQuantizer(KMeansQuantizer.Config(groups=2, num_vars=3), 4)
    x = torch.randn(1, 5, 4)
    ze = q.project(x)
    out = q(x, torch.tensor([3]))
    zq = q.lookup(out.codes)
    ref = 1.25 * (zq[:, :3] - ze[:, :3]).pow(2).mean()
    assert float(out.aux_loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)


def test_combined_groups_share_one_codebook_and_config_errors():
    q = KMeansQuantizer(KMeansQuantizer.Config(groups=3, num_vars=4, combine_groups=True), 6)
    assert q.embedding.shape == (4, 1, 2)
    assert q.codebook().shape == (3, 4, 2)
    assert q(torch.randn(1, 2, 6)).vectors.shape == (1, 2, 6)
    with pytest.raises(ConfigError):
        KMeansQuantizer.from_config(KMeansQuantizerConfig(groups=4), Signal(kind="frames", dim=6))
    built = KMeansQuantizer.from_config(KMeansQuantizerConfig(), Signal(kind="frames", dim=16))
    assert built.produces().dim == 16
