"""The orchestrator's sizing: how many samples one chunk task renders."""

from __future__ import annotations

import pytest

from shardgen.options import RenderOptions
from shardgen.orchestrate import chunk_samples


@pytest.mark.parametrize(
    ("render", "expected"),
    [(RenderOptions(), 256), (RenderOptions(size=2048, format="npy"), 7), (RenderOptions(size=4096, format="npy"), 1)],
)
def test_chunks_are_bounded_in_bytes(render, expected):
    """A chunk holds chunk_size samples, or fewer where their images would exceed CHUNK_BYTES."""
    assert chunk_samples(256, render, 100_000, 2) == expected


@pytest.mark.parametrize(
    ("count", "procs", "size", "expected"),
    [(1000, 2, 256, 256), (30_000, 2, 256, 1875), (30_000, 128, 256, 256), (10**7, 4, 64, 4096)],
)
def test_default_chunks_give_every_worker_several_within_bounds(count, procs, size, expected):
    """By default a split is cut into about 8 chunks a worker, each of 256 to 4096 samples."""
    assert chunk_samples(None, RenderOptions(size=size), count, procs) == expected
