"""The plan: a seeded permutation of every sample, cut into near-equal shards and chunks."""

from __future__ import annotations

import numpy as np

from shardgen.plan import locate, plan_split, shard_bounds


def test_shard_bounds_cover_everything_with_near_equal_sizes():
    """25 samples at most 10 a shard: three shards of 9, 8, 8."""
    assert shard_bounds(25, 10) == [(0, 9), (9, 17), (17, 25)]
    assert shard_bounds(0, 10) == []


def test_plan_is_a_permutation_and_deterministic():
    """Every sample appears once; the same seed gives the same order, another seed another."""
    counts = (30, 50, 20)
    a = plan_split("train", counts, seed=3, shuffle=True, shard_size=40, chunk_size=7)
    b = plan_split("train", counts, seed=3, shuffle=True, shard_size=40, chunk_size=7)
    c = plan_split("train", counts, seed=4, shuffle=True, shard_size=40, chunk_size=7)
    assert sorted(a.order.tolist()) == list(range(100))
    assert np.array_equal(a.order, b.order) and not np.array_equal(a.order, c.order)


def test_no_shuffle_keeps_source_order():
    """Without shuffling, samples come class by class in source order."""
    plan = plan_split("valid", (2, 3), seed=0, shuffle=False, shard_size=10, chunk_size=2)
    classes, positions = locate(plan.order, plan.class_starts)
    assert classes.tolist() == [0, 0, 1, 1, 1] and positions.tolist() == [0, 1, 0, 1, 2]


def test_chunks_tile_each_shard():
    """Chunks are contiguous, in order, and never cross a shard boundary."""
    plan = plan_split("train", (37,), seed=0, shuffle=True, shard_size=20, chunk_size=8)
    for shard in plan.shards:
        chunks = shard.chunks()
        assert chunks[0][0] == shard.start and chunks[-1][1] == shard.stop
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        assert all(stop - start <= 8 for start, stop in chunks)
