"""BucketBatchSampler: budget, determinism, sharding, exact mid-epoch resume."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from w2v.data.sampler import BucketBatchSampler


def _sizes(n=200, seed=0):
    return np.random.default_rng(seed).integers(1000, 30_000, size=n)


def _keys(batches):
    return [tuple(b) for b in batches]


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 50_000), min_size=1, max_size=80),
       max_tokens=st.integers(30_000, 200_000), pad_cap=st.integers(1000, 30_000))
def test_every_item_once_and_budget_respected(sizes, max_tokens, pad_cap):
    s = BucketBatchSampler(np.array(sizes), max_tokens=max_tokens, max_sample_size=pad_cap,
                           seed=3)
    batches = list(s)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(sizes)))
    capped = np.minimum(sizes, pad_cap)
    for b in batches:
        assert capped[b].max() * len(b) <= max_tokens


def test_batches_group_similar_lengths():
    sizes = _sizes()
    s = BucketBatchSampler(sizes, max_tokens=100_000, shuffle=False)
    batches = list(s)
    # unshuffled: longest first, each batch a contiguous run of the sorted lengths
    firsts = [sizes[b].max() for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    assert all(sizes[b[0]] >= sizes[b].max() for b in batches)


def test_shuffle_is_deterministic_per_epoch():
    sizes = _sizes()
    a = BucketBatchSampler(sizes, max_tokens=100_000, seed=5)
    b = BucketBatchSampler(sizes, max_tokens=100_000, seed=5)
    assert _keys(a) == _keys(b)
    epoch0 = _keys(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert _keys(a) == _keys(b) != epoch0
    c = BucketBatchSampler(sizes, max_tokens=100_000, seed=6)
    assert _keys(c) != epoch0


def test_mid_epoch_resume_yields_exactly_the_remaining_batches():
    sizes = _sizes()
    s = BucketBatchSampler(sizes, max_tokens=60_000, seed=2, epoch=3)
    full = _keys(s)
    it = iter(s)
    for _ in range(4):  # a prefetching loader pulls ahead...
        next(it)
    s.mark_consumed(1)  # ...but training used only these
    s.mark_consumed(1)
    state = s.state_dict()
    assert state["epoch"] == 3 and state["consumed"] == 2

    fresh = BucketBatchSampler(sizes, max_tokens=60_000, seed=2)
    fresh.set_epoch(3)
    fresh.load_state_dict(state)
    assert len(fresh) == len(full) - 2
    assert _keys(fresh) == full[2:]
    fresh.set_epoch(3)  # the same epoch again keeps the position
    assert _keys(fresh) == full[2:]
    fresh.set_epoch(4)
    assert len(_keys(fresh)) == len(full) and fresh.consumed == 0


@pytest.mark.parametrize("world", [2, 3, 4])
def test_sharding_gives_equal_counts_and_covers_every_batch(world):
    sizes = _sizes(n=101)
    every = _keys(BucketBatchSampler(sizes, max_tokens=70_000, seed=1).batches(0))
    shards = [list(BucketBatchSampler(sizes, max_tokens=70_000, seed=1, rank=r,
                                      world_size=world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    assert len(shards[0]) == -(-len(every) // world)
    originals = [tuple(b) for s in shards for b in s if not b.repeat]
    repeats = [tuple(b) for s in shards for b in s if b.repeat]
    assert sorted(originals) == sorted(every)  # disjoint and complete
    assert len(repeats) == world * len(shards[0]) - len(every)
    assert set(repeats) <= set(every[:len(repeats)])


def test_fewer_batches_than_ranks_still_gives_every_rank_one():
    sizes = np.array([1000, 1000])
    shards = [list(BucketBatchSampler(sizes, max_tokens=5000, rank=r, world_size=4))
              for r in range(4)]
    assert [len(s) for s in shards] == [1, 1, 1, 1]


def test_resume_on_a_different_world_size_repeats_nothing():
    sizes = _sizes(n=120)
    every = _keys(BucketBatchSampler(sizes, max_tokens=50_000, seed=4).batches(0))
    old = BucketBatchSampler(sizes, max_tokens=50_000, seed=4, rank=0, world_size=2)
    old.mark_consumed(5)  # 10 global batches used
    new = [BucketBatchSampler(sizes, max_tokens=50_000, seed=4, rank=r, world_size=3)
           for r in range(3)]
    for s in new:
        s.load_state_dict(old.state_dict())
    rest = [tuple(b) for s in new for b in s if not b.repeat]
    assert not set(rest) & set(every[:10])
    assert len({len(list(s)) for s in new}) == 1


def test_buckets_round_sizes_up_to_few_edges():
    sizes = _sizes(n=300)
    s = BucketBatchSampler(sizes, max_tokens=100_000, num_buckets=4)
    assert len(s.edges) <= 4 and s.edges[-1] == sizes.max()
    assert set(np.unique(s.sizes)) <= set(s.edges.tolist())
    assert (s.sizes >= sizes).all()
    for b in s:
        assert s.sizes[b].max() * len(b) <= 100_000
