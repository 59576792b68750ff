"""The orchestrator's sizing and order: how many samples one chunk task renders, which shards one task renders
whole, and which input file is read first."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shardgen import orchestrate, store, writer
from shardgen.npz import object_array
from shardgen.options import BuildOptions, RenderOptions
from shardgen.orchestrate import chunk_samples, whole_shards
from shardgen.pipeline import build
from shardgen.plan import Shard
from shardgen.sample import write_samples
from shardgen.worker import render_chunk, render_shard
from tests.helpers import leftovers, write_npz


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


def shards(count: int, samples: int = 100) -> list[Shard]:
    return [Shard("train", number, number * samples, (number + 1) * samples, 25) for number in range(count)]


@pytest.mark.parametrize(("count", "workers", "whole"), [(10, 2, 6), (4, 2, 0), (3, 2, 0), (20, 4, 12), (1, 1, 0)])
def test_all_shards_but_the_last_two_rounds_are_rendered_whole(count, workers, whole):
    """Every shard but the last TAIL_ROUNDS per worker is one task; those keep their chunks for the build's end."""
    todo = shards(count)
    assert whole_shards(todo, workers, RenderOptions()) == frozenset(shard.name for shard in todo[:whole])


def test_a_shard_too_large_for_one_task_keeps_its_chunks():
    """A shard whose output is estimated above WHOLE_SHARD_BYTES (large npy images) is rendered in chunks."""
    todo = shards(10, samples=100)
    assert whole_shards(todo, 2, RenderOptions(size=2048, format="npy")) == frozenset()


def test_a_build_renders_whole_shards_and_chunks_only_the_tail(tmp_path, monkeypatch):
    """A build whose shards outnumber its workers hands all but the last two rounds to render_shard, same bytes."""
    src = tmp_path / "npz"
    write_samples(src, categories=2, per_split=40, seed=5)
    options = BuildOptions(render=RenderOptions(size=16), shard_size=10, splits=("train",))
    rendered_whole = []

    def spy(task):
        rendered_whole.append(task.fragment.name)
        return render_shard(task)

    monkeypatch.setattr(writer, "render_shard", spy)
    with ThreadPoolExecutor(1) as pool:
        build(src, tmp_path / "whole", options, executor=pool, procs=1)
        build(src, tmp_path / "chunked", options, executor=pool, procs=1, chunk_size=3)
    names = [f"train-{n:06d}.tar" for n in range(8)]
    assert sorted(rendered_whole) == names[:6]  # 8 shards, 1 worker: the last 2 keep their chunks
    assert all((tmp_path / "whole" / n).read_bytes() == (tmp_path / "chunked" / n).read_bytes() for n in names)


def test_a_temp_file_left_by_a_killed_task_is_removed_when_the_build_ends(tmp_path, monkeypatch):
    """A fragment temp file no task will finish (its worker killed, the chunk rerun elsewhere) is gone at the end."""
    src = tmp_path / "npz"
    write_samples(src, categories=2, per_split=10, seed=5)
    options = BuildOptions(render=RenderOptions(size=16), shard_size=10, splits=("train",))

    def killed_then_rerun(task):
        (task.fragment.parent / f".{task.fragment.name}.123-abcd.tmp").write_bytes(b"half a fragment")
        return render_chunk(task)

    monkeypatch.setattr(writer, "render_chunk", killed_then_rerun)
    with ThreadPoolExecutor(1) as pool:
        build(src, tmp_path / "out", options, executor=pool, procs=1, chunk_size=3)
    assert leftovers(tmp_path / "out") == []


def test_ingest_submits_the_largest_files_first_and_keeps_the_classes_in_name_order(tmp_path, monkeypatch):
    """Ingest tasks go out largest file first (the last to start is a small one); class indexes stay by name."""
    src = tmp_path / "npz"
    src.mkdir()
    sketch = np.array([[0, 0, 0], [4, 4, 0], [2, -1, 1]], np.int16)
    for name, count in (("ant", 3), ("bee", 30), ("cat", 10)):
        write_npz(src / f"{name}.npz", train=object_array([sketch] * count))
    submitted = []

    def spy(task):
        submitted.append(task.source.name)
        return store.ingest(task)

    monkeypatch.setattr(orchestrate, "ingest", spy)
    options = BuildOptions(render=RenderOptions(size=16), splits=("train",))
    with ThreadPoolExecutor(1) as pool:
        build(src, tmp_path / "out", options, executor=pool, procs=1)
    assert submitted == ["bee.npz", "cat.npz", "ant.npz"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["classes"] == ["ant", "bee", "cat"]


def test_the_largest_split_is_planned_while_the_smallest_one_renders(tmp_path, monkeypatch):
    """The largest split's plan is shuffled and written while the smallest split's shards render: it goes first."""
    src, dst = tmp_path / "npz", tmp_path / "out"
    src.mkdir()
    sketch = np.array([[0, 0, 0], [4, 4, 0], [2, -1, 1]], np.int16)
    counts = {"train": 40, "valid": 10, "test": 20}
    write_npz(src / "ant.npz", **{split: object_array([sketch] * count) for split, count in counts.items()})
    real_order = orchestrate.split_order

    def train_waits_for_the_other_splits(split, total, **kwargs):
        deadline = time.monotonic() + 20
        while split == "train" and not (dst / "valid-000000.tar").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("valid was not rendered while train's plan was pending")
            time.sleep(0.01)
        return real_order(split, total, **kwargs)

    monkeypatch.setattr(orchestrate, "split_order", train_waits_for_the_other_splits)
    with ThreadPoolExecutor(1) as pool:
        build(src, dst, BuildOptions(render=RenderOptions(size=16), shard_size=10), executor=pool, procs=1)
    assert len(list(dst.glob("*.tar"))) == 7 and leftovers(dst) == []


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"train": 70, "valid": 3, "test": 2}, ["test", "train", "valid"]),
        ({"train": 70, "valid": 2, "test": 2}, ["valid", "train", "test"]),
        ({"train": 2, "valid": 2, "test": 2}, ["train", "valid", "test"]),
        ({"valid": 5}, ["valid"]),
    ],
)
def test_the_smallest_split_renders_first_and_the_others_keep_their_order(counts, expected):
    """render_order moves the smallest split to the front (ties: the first of them) and leaves the rest in order."""
    shards = {split: tuple(Shard(split, n, 0, 1, 1) for n in range(count)) for split, count in counts.items()}
    assert orchestrate.render_order(shards) == expected
