"""Collating: crops (deterministic per seed/epoch/id), padding, buckets, and the loader."""

import numpy as np
import torch

from w2v.data.collate import Collater, crop_offsets
from w2v.data.config import DataConfig
from w2v.data.dataset import IndexBatch
from w2v.data.sources import build_loader
from w2v.interfaces import Batch


def test_crop_offsets_depend_only_on_seed_epoch_and_id():
    ids = np.array([5, 9, 12, 40])
    lengths = np.array([5000, 7000, 6000, 9000])
    a = crop_offsets(ids, lengths, 4000, seed=1, epoch=2)
    # the same utterance in another batch, at another position, gets the same crop
    b = crop_offsets(ids[::-1], lengths[::-1], 4000, seed=1, epoch=2)[::-1]
    c = crop_offsets(ids[2:], lengths[2:], 4000, seed=1, epoch=2)
    assert (a == b).all() and (a[2:] == c).all()
    assert ((a >= 0) & (a <= lengths - 4000)).all()
    assert (crop_offsets(ids, lengths, 4000, seed=1, epoch=3) != a).any()
    assert (crop_offsets(ids, lengths, 4000, seed=2, epoch=2) != a).any()
    assert (crop_offsets(ids, lengths, 4000, seed=1, epoch=2, random=False) == 0).all()


def test_crop_offsets_cover_the_whole_range():
    ids = np.arange(4000)
    offsets = crop_offsets(ids, np.full(4000, 110), 100, seed=0, epoch=0)
    assert set(offsets.tolist()) == set(range(11))  # 0..room, both ends reachable


def _items(lengths, epoch=0, targets=None):
    items = []
    for i, n in enumerate(lengths):
        wave = torch.arange(n, dtype=torch.float32) + 1000 * i
        items.append({"id": 10 + i, "wave": wave,
                      "target": None if targets is None else torch.tensor(targets[i])})
    return IndexBatch(items, epoch)


def test_crop_collate_is_padding_free_and_slices_the_waveforms():
    collate = Collater(pad=False, max_sample_size=10_000, seed=3)
    items = _items([900, 700, 1200], epoch=1)
    batch = collate(items)
    assert isinstance(batch, Batch) and batch.source.shape == (3, 700)
    assert batch.lengths is None and batch.ids.tolist() == [10, 11, 12]
    starts = crop_offsets(np.array([10, 11, 12]), np.array([900, 700, 1200]), 700, seed=3,
                          epoch=1)
    for row, (item, s) in enumerate(zip(items, starts)):
        assert torch.equal(batch.source[row], item["wave"][s:s + 700])
    assert torch.equal(collate(_items([900, 700, 1200], epoch=1)).source, batch.source)


def test_crop_respects_max_sample_size_and_is_fixed_in_evaluation():
    batch = Collater(pad=False, max_sample_size=500, train=False)(_items([900, 700]))
    assert batch.source.shape == (2, 500)
    assert torch.equal(batch.source[1], torch.arange(500, dtype=torch.float32) + 1000)


def test_pad_collate_zero_pads_and_carries_lengths_and_targets():
    collate = Collater(pad=True, max_sample_size=10_000, pad_id=1)
    batch = collate(_items([300, 500, 200], targets=[[4, 5], [6], [7, 8, 9]]))
    assert batch.source.shape == (3, 500) and batch.lengths.tolist() == [300, 500, 200]
    assert (batch.source[0, 300:] == 0).all() and torch.equal(batch.source[0, :300],
                                                              torch.arange(300.0))
    assert batch.targets.tolist() == [[4, 5, 1], [6, 1, 1], [7, 8, 9]]
    assert batch.target_lengths.tolist() == [2, 1, 3]


def test_pad_collate_rounds_up_to_the_bucket_edge():
    batch = Collater(pad=True, max_sample_size=10_000, bucket_edges=[250, 600, 1000])(
        _items([300, 500]))
    assert batch.source.shape == (2, 600) and batch.lengths.tolist() == [300, 500]


# ------------------------------------------------------------------ through the DataLoader


def _corpus_config(corpus, n=12, **kw):
    rows = [(corpus.audio(f"u{i:02d}.wav", n=800 + 37 * i, subtype="FLOAT") and f"u{i:02d}.wav",
             800 + 37 * i) for i in range(n)]
    settings = {"max_tokens": 3000, "max_sample_size": 1000, "seed": 7, **kw}
    return DataConfig(train=corpus.manifest("train.tsv", rows), **settings)


def _flatten(batches):
    return [(b.ids.tolist(), b.source.clone()) for b in batches]


def test_workers_give_the_same_batches_as_the_main_process(corpus):
    cfg = _corpus_config(corpus)
    loader0, _ = build_loader(cfg, "train", epoch=2)
    cfg.num_workers = 1
    loader1, _ = build_loader(cfg, "train", epoch=2)
    a, b = _flatten(loader0), _flatten(loader1)
    assert [ids for ids, _ in a] == [ids for ids, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert sorted(i for ids, _ in a for i in ids) == list(range(12))


def test_loader_resume_mid_epoch_repeats_the_same_crops(corpus):
    cfg = _corpus_config(corpus, num_workers=1)
    loader, sampler = build_loader(cfg, "train", epoch=1)
    it = iter(loader)
    seen = [next(it) for _ in range(3)]
    sampler.mark_consumed(2)  # the third batch was fetched but never trained on
    state = sampler.state_dict()
    rest = [seen[2]] + list(it)

    cfg.num_workers = 0
    resumed, rsampler = build_loader(cfg, "train")
    rsampler.load_state_dict(state)
    again = list(resumed)
    assert [b.ids.tolist() for b in again] == [b.ids.tolist() for b in rest]
    assert all(torch.equal(x.source, y.source) for x, y in zip(again, rest))


def test_distributed_loaders_shard_the_data(corpus):
    cfg = _corpus_config(corpus)
    shards = [list(build_loader(cfg, "train", rank=r, world_size=2)[0]) for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    ids = [i for s in shards for b in s if not b.extra.get("repeat") for i in b.ids.tolist()]
    assert sorted(ids) == list(range(12))


def test_evaluation_loader_is_ordered_and_uncropped_at_offset_zero(corpus):
    cfg = _corpus_config(corpus)
    a = _flatten(build_loader(cfg, "train", train=False)[0])
    b = _flatten(build_loader(cfg, "train", train=False, epoch=5)[0])
    assert [x for x, _ in a] == [x for x, _ in b]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
