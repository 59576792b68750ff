"""The plan stage: a pure function of (class counts, options, seed) saying which sample goes where.

Each split's samples are numbered class by class (``global id = class start + position``). The plan
is a permutation of those ids, seeded per split, cut into shards of near-equal size (at most
``shard_size``) and each shard into chunks, the unit of work handed to a worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .read import SPLITS


@dataclass(frozen=True)
class Shard:
    """One output shard: a contiguous range of the split's plan, rendered in chunks."""

    split: str
    number: int
    start: int  # into the plan's permutation
    stop: int
    chunk_size: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.number:06d}.tar"

    @property
    def count(self) -> int:
        return self.stop - self.start

    def chunks(self) -> list[tuple[int, int]]:
        """``(start, stop)`` plan ranges of this shard's chunks, in order."""
        return [(lo, min(lo + self.chunk_size, self.stop)) for lo in range(self.start, self.stop, self.chunk_size)]


@dataclass(frozen=True)
class SplitPlan:
    """The order of one split's samples and the shards they fall into."""

    split: str
    class_counts: tuple[int, ...]
    order: np.ndarray  # permutation of global sample ids, int64
    shards: tuple[Shard, ...]

    @property
    def class_starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.class_counts, dtype=np.int64)])


def shard_bounds(count: int, shard_size: int) -> list[tuple[int, int]]:
    """Cut ``count`` samples into the fewest shards of at most ``shard_size``, sizes within one.

    Even sizes keep the last shard from being a tiny remainder that misses classes.
    """
    if count == 0:
        return []
    shards = math.ceil(count / shard_size)
    base, extra = divmod(count, shards)
    bounds, start = [], 0
    for number in range(shards):
        stop = start + base + (number < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def plan_split(
    split: str,
    class_counts: tuple[int, ...],
    *,
    seed: int,
    shuffle: bool,
    shard_size: int,
    chunk_size: int,
) -> SplitPlan:
    """Plan one split: shuffled across classes (seeded) or in source order."""
    total = int(sum(class_counts))
    order = split_order(split, total, seed=seed, shuffle=shuffle)
    return SplitPlan(split, tuple(class_counts), order, split_shards(split, total, shard_size, chunk_size))


def split_order(split: str, total: int, *, seed: int, shuffle: bool) -> np.ndarray:
    """The order of a split's ``total`` samples: a seeded permutation of their global ids, or source order."""
    if not shuffle:
        return np.arange(total, dtype=np.int64)
    # One independent stream per split, so adding a split does not reorder the others.
    rng = np.random.default_rng([seed, SPLITS.index(split) if split in SPLITS else len(split)])
    # copy=False: on 64-bit platforms it is int64 already, and a copy of QuickDraw's 24M-entry
    # train plan cost up to 0.5 s (fresh pages) while every worker waited for the plan.
    return rng.permutation(total).astype(np.int64, copy=False)


def split_shards(split: str, total: int, shard_size: int, chunk_size: int) -> tuple[Shard, ...]:
    """The shards of a split of ``total`` samples; they depend on its size only, not on its order."""
    bounds = shard_bounds(total, shard_size)
    return tuple(Shard(split, number, start, stop, chunk_size) for number, (start, stop) in enumerate(bounds))


def locate(global_ids: np.ndarray, class_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map global sample ids to ``(class index, position within the class)``."""
    classes = np.searchsorted(class_starts, global_ids, side="right") - 1
    return classes, global_ids - class_starts[classes]


def plan_path(state_dir: Path, split: str) -> Path:
    return Path(state_dir) / f"plan-{split}.npy"
