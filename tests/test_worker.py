"""The render worker: a chunk description in, its fragment out."""

from __future__ import annotations

import pytest

from shardgen import worker
from shardgen.render import RenderOptions
from shardgen.worker import ChunkTask, render_chunk


@pytest.mark.parametrize("batch_bytes", [1, 700])
def test_a_chunk_is_the_same_whatever_its_render_batches(small_build, tmp_path, monkeypatch, batch_bytes):
    """Batches of one image, or of a few, give the fragment that one batch for the whole chunk gives."""
    options = RenderOptions(size=32)
    monkeypatch.setattr(worker, "RENDER_BATCH_BYTES", 1 << 30)
    render_chunk(ChunkTask(small_build / ".shardgen", "train", 3, 17, options, 0, tmp_path / "whole"))
    monkeypatch.setattr(worker, "RENDER_BATCH_BYTES", batch_bytes)
    render_chunk(ChunkTask(small_build / ".shardgen", "train", 3, 17, options, 0, tmp_path / "batched"))
    assert (tmp_path / "batched").read_bytes() == (tmp_path / "whole").read_bytes()
