"""k-means, PCA and pooling of wav2vec-U's audio preparation."""

from __future__ import annotations

import pytest
import torch

from w2v.plugins.clustering import fit_kmeans, fit_pca, mean_pool_pairs, merge_runs


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.randint(0, 3, (600,), generator=g)
    return centres[labels] + 0.3 * torch.randn(600, 2, generator=g), labels


def test_torch_kmeans_is_seeded_and_recovers_separated_clusters():
    x, labels = _blobs()
    a = fit_kmeans(x, 3, seed=1, backend="torch")
    b = fit_kmeans(x, 3, seed=1, backend="torch")
    assert torch.equal(a.centroids, b.centroids)
    ids = a.assign(x)
    # each true cluster maps to one k-means cluster, and the map is a bijection
    mapping = {int(l): int(torch.mode(ids[labels == l]).values) for l in range(3)}
    assert len(set(mapping.values())) == 3
    assert all((ids[labels == l] == mapping[l]).all() for l in range(3))
    assert a.inertia(x) < 0.3


def test_kmeans_refuses_more_clusters_than_frames():
    from w2v.errors import DataError

    with pytest.raises(DataError, match="at least 5 frames"):
        fit_kmeans(torch.randn(3, 2), 5, backend="torch")


def test_pca_keeps_the_high_variance_direction_and_whitens():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 3, generator=g) * torch.tensor([5.0, 1.0, 0.1])
    rot = torch.linalg.qr(torch.randn(3, 3, generator=g)).Q
    x = z @ rot.T + torch.tensor([1.0, 2.0, 3.0])
    pca = fit_pca(x, 2)
    assert pca.matrix.shape == (3, 2)
    y = pca.apply(x)
    assert y.var(0)[0].item() == pytest.approx(25.0, rel=0.1)
    assert y.var(0)[1].item() == pytest.approx(1.0, rel=0.1)
    assert torch.equal(fit_pca(x, 2).matrix, pca.matrix)          # deterministic signs
    white = fit_pca(x, 2, whiten=True).apply(x)
    torch.testing.assert_close(white.var(0), torch.ones(2), rtol=0.02, atol=0.02)
    assert fit_pca(x, 10).matrix.shape == (3, 3)                   # capped at D


def test_merge_runs_averages_consecutive_equal_clusters():
    x = torch.arange(12.0).view(6, 2)
    out = merge_runs(x, torch.tensor([4, 4, 1, 4, 4, 4]))
    torch.testing.assert_close(out, torch.stack([x[:2].mean(0), x[2], x[3:].mean(0)]))


@pytest.mark.parametrize("length,rate", [(5, 0.5), (6, 0.5), (10, 0.25), (1, 0.5)])
def test_mean_pool_follows_fairseq_padding_by_the_last_frame(length, rate):
    import math

    x = torch.randn(length, 3)
    out = mean_pool_pairs(x, rate)
    target = math.ceil(length * rate)
    assert out.shape == (target, 3)
    padded = torch.cat([x, x[-1:].expand((-length) % target, -1)])
    size = len(padded) // target
    for i in range(target):
        torch.testing.assert_close(out[i], padded[i * size:(i + 1) * size].mean(0))


def test_alignment_segments_cover_frames_by_their_first_sample():
    from w2v.plugins.wav2vec_u.prepare import segment_ids

    # segments of 0-640, 640-700, 700-2000 samples; 320-sample frames start at 0, 320, ...
    ids = segment_ids([(0, 640), (640, 700), (700, 2000)], frames=7, stride=320)
    assert ids.tolist() == [0, 0, 1, 2, 2, 2, 2]
