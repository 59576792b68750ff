"""What runs in the workers: render_chunk reads the build its task names and lets go of the store."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shardgen import worker
from shardgen.formats.packing import ExtrasReader
from shardgen.layout import LAYOUT_FILE, Layout
from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from shardgen.sample import write_samples
from shardgen.worker import ChunkTask, render_chunk
from tests.helpers import shard_bytes

OPTIONS = BuildOptions(render=RenderOptions(size=32), splits=("valid",))
LAYOUT_MTIME_NS = 1_700_000_000 * 10**9  # what a coarse-mtime filesystem may show for every rewrite


def build_here(src: Path, dst: Path, overwrite: bool = False) -> None:
    """Build in this process (a thread pool): the worker caches it fills are this test's."""
    with ThreadPoolExecutor(1) as executor:
        build(src, dst, OPTIONS, executor=executor, procs=1, overwrite=overwrite)


@pytest.fixture
def built(tmp_path) -> Path:
    """A small finished build of 2 classes, 20 sketches in its one split."""
    write_samples(tmp_path / "src", categories=2, per_split=20, seed=1)
    build_here(tmp_path / "src", tmp_path / "out")
    return tmp_path / "out"


def chunk_task(dst: Path, build_id: str, fragment: Path) -> ChunkTask:
    return ChunkTask(
        state_dir=dst / ".shardgen",
        build_id=build_id,
        split="valid",
        start=0,
        stop=10,
        options=OPTIONS.render,
        seed=OPTIONS.seed,
        fragment=fragment,
    )


def test_a_worker_renders_a_rebuild_from_its_new_store_though_the_layout_kept_its_mtime(tmp_path, monkeypatch):
    """A worker that rendered one build renders an --overwrite rebuild in the same state folder from
    the new inputs, even when the layout file's mtime stayed the same."""
    save = Layout.save

    def save_with_one_mtime(layout: Layout, state_dir: Path) -> None:
        save(layout, state_dir)
        os.utime(Path(state_dir) / LAYOUT_FILE, ns=(LAYOUT_MTIME_NS, LAYOUT_MTIME_NS))

    monkeypatch.setattr(Layout, "save", save_with_one_mtime)
    first, second = tmp_path / "first", tmp_path / "second"
    write_samples(first, categories=2, per_split=20, seed=1)
    write_samples(second, categories=2, per_split=20, seed=2)  # the same classes and counts, other sketches
    build_here(first, tmp_path / "out")
    build_here(second, tmp_path / "out", overwrite=True)
    build(second, tmp_path / "fresh", OPTIONS, procs=1)
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "fresh")


def test_a_task_of_another_build_than_the_state_folder_holds_is_refused(built, tmp_path):
    """A chunk task naming a build id the state folder's layout does not hold fails instead of rendering."""
    with pytest.raises(RuntimeError, match="not the task's build"):
        render_chunk(chunk_task(built, "0" * 32, tmp_path / "fragment"))


def test_a_chunk_whose_write_fails_releases_the_store_at_once(built, tmp_path, monkeypatch):
    """When writing a chunk's fragment fails half-way, its store mappings are released before the error surfaces."""
    released = []
    monkeypatch.setattr(ExtrasReader, "release", lambda reader: released.append(reader))

    def write_one_member_then_fail(path, members, list_members):
        next(iter(members))
        raise OSError("disk full")

    monkeypatch.setattr(worker, "write_fragment", write_one_member_then_fail)
    build_id = Layout.load(built / ".shardgen").build_id
    failure = None
    try:
        render_chunk(chunk_task(built, build_id, tmp_path / "fragment"))
    except OSError as error:
        failure = error  # kept, as a caller may keep it: its traceback holds the failed write's frames
    assert str(failure) == "disk full"
    assert len(released) == 1


@pytest.mark.parametrize("batch_bytes", [1, 700])
def test_a_chunk_is_the_same_whatever_its_render_batches(built, tmp_path, monkeypatch, batch_bytes):
    """Batches of one image, or of a few, give the fragment that one batch for the whole chunk gives."""
    build_id = Layout.load(built / ".shardgen").build_id
    monkeypatch.setattr(worker, "RENDER_BATCH_BYTES", 1 << 30)
    render_chunk(chunk_task(built, build_id, tmp_path / "whole"))
    monkeypatch.setattr(worker, "RENDER_BATCH_BYTES", batch_bytes)
    render_chunk(chunk_task(built, build_id, tmp_path / "batched"))
    assert (tmp_path / "batched").read_bytes() == (tmp_path / "whole").read_bytes()
