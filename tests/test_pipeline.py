"""End to end: every sketch rendered exactly once, classes mixed, output independent of --procs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from shardgen import pipeline
from shardgen.errors import WorkerError
from shardgen.executor import StopOnSignals
from shardgen.location import Location
from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from shardgen.sample import write_samples
from tests.helpers import counts_by_class, read_shard, read_split, shard_bytes

SMALL = BuildOptions(render=RenderOptions(size=64), shard_size=100)


@pytest.fixture(scope="module")
def built(sample_src, tmp_path_factory):
    dst = tmp_path_factory.mktemp("built")
    result = build(sample_src, dst, SMALL, procs=2, chunk_size=16)
    return dst, result


def test_every_sketch_is_rendered_exactly_once(built, sample_src):
    """Per split, the shards hold one sample per input sketch, keyed uniquely, none missing."""
    dst, result = built
    for split in ("train", "valid", "test"):
        samples = read_split(dst, split)  # asserts no key repeats
        assert len(samples) == 4 * 60
        seen = {(json.loads(s["json"])["source"], json.loads(s["json"])["index"]) for s in samples.values()}
        assert seen == {(f, i) for f in ("circle.npz", "square.npz", "star.npz", "triangle.npz") for i in range(60)}
        assert result.manifest["splits"][split]["count"] == 4 * 60


def test_samples_carry_image_class_and_metadata(built):
    """Each sample is KEY.png, KEY.cls and KEY.json, consistent with the manifest's classes."""
    dst, result = built
    classes = result.manifest["classes"]
    assert classes == ["circle", "square", "star", "triangle"]
    for key, sample in read_split(dst, "valid").items():
        assert set(sample) == {"png", "cls", "json"} and "." not in key
        meta = json.loads(sample["json"])
        assert int(sample["cls"]) == meta["class"] and classes[meta["class"]] == meta["category"]
        assert meta["split"] == "valid" and meta["source"] == f"{meta['category']}.npz"
        assert sample["png"].startswith(b"\x89PNG")


def test_every_shard_contains_every_class(built):
    """Shuffled shards of at least 20 x classes samples hold every class."""
    dst, result = built
    for split in ("train", "valid", "test"):
        for shard in sorted(dst.glob(f"{split}-*.tar")):
            assert set(counts_by_class(read_shard(shard))) == {0, 1, 2, 3}, shard.name


def test_manifest_lists_shards_with_counts_and_hashes(built):
    """manifest.json's shard entries match the files on disk."""
    import hashlib

    dst, result = built
    manifest = json.loads((dst / "manifest.json").read_text())
    for info in manifest["splits"].values():
        assert sum(s["count"] for s in info["shards"]) == info["count"]
        for shard in info["shards"]:
            data = (dst / shard["file"]).read_bytes()
            assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
    assert not list(dst.glob("*.partial"))


def test_output_is_identical_for_one_and_two_processes(sample_src, tmp_path):
    """--procs 1 and --procs 2 (and different chunk sizes) write byte-identical shards."""
    build(sample_src, tmp_path / "one", SMALL, procs=1, chunk_size=7)
    build(sample_src, tmp_path / "two", SMALL, procs=2, chunk_size=50)
    one, two = shard_bytes(tmp_path / "one"), shard_bytes(tmp_path / "two")
    assert one and one == two


def test_no_shuffle_keeps_classes_in_source_order(sample_src, tmp_path):
    """--no-shuffle writes classes one after another, each in source index order."""
    options = BuildOptions(render=RenderOptions(size=32), shard_size=1000, shuffle=False, splits=("valid",))
    build(sample_src, tmp_path, options, procs=1)
    metas = [json.loads(s["json"]) for s in read_split(tmp_path, "valid").values()]
    assert [(m["class"], m["index"]) for m in metas] == [(c, i) for c in range(4) for i in range(60)]


def test_limit_and_splits_select_the_work(sample_src, tmp_path):
    """--limit caps sketches per category and split; --splits builds only those asked for."""
    options = BuildOptions(render=RenderOptions(size=32), limit=5, splits=("train", "test"))
    result = build(sample_src, tmp_path, options, procs=1)
    assert {s: i["count"] for s, i in result.manifest["splits"].items()} == {"train": 20, "test": 20}
    assert not list(tmp_path.glob("valid-*"))


def test_wids_index_lists_each_split_shards(built):
    """{split}.wids.json follows wids-shard-index-v1 with relative URLs and sample counts."""
    dst, result = built
    index = json.loads((dst / "train.wids.json").read_text())
    assert index["wids_version"] == 1 and index["__kind__"] == "wids-shard-index-v1"
    assert sum(s["nsamples"] for s in index["shardlist"]) == 240
    assert all((dst / s["url"]).stat().st_size == s["filesize"] for s in index["shardlist"])


def test_wids_index_entries_hold_no_md5sum(built):
    """A shard's wids entry is its url, sample count and size: no md5sum, which wids never checks."""
    dst, _ = built
    index = json.loads((dst / "train.wids.json").read_text())
    assert {tuple(entry) for entry in index["shardlist"]} == {("url", "nsamples", "filesize")}


def test_invalid_sketches_are_skipped_and_listed(tmp_path):
    """Bad sketches are left out and listed with file, split, index and reason; the rest build."""
    from shardgen.npz import object_array
    from tests.helpers import write_npz

    src = tmp_path / "src"
    src.mkdir()
    good = np.array([[0, 0, 0], [10, 10, 1]], np.int16)
    write_npz(src / "a.npz", train=object_array([good, np.zeros((0, 3)), good, np.array([[np.nan, 0, 0]])]))
    result = build(src, tmp_path / "out", BuildOptions(render=RenderOptions(size=32)), procs=1)
    assert result.manifest["splits"]["train"]["count"] == 2
    assert [(s["source"], s["split"], s["index"]) for s in result.manifest["skipped"]] == [
        ("a.npz", "train", 1),
        ("a.npz", "train", 3),
    ]


def test_sample_files_are_deterministic(tmp_path):
    """shardgen sample with the same seed writes byte-identical files."""
    a = write_samples(tmp_path / "a", categories=3, per_split=5, seed=7)
    b = write_samples(tmp_path / "b", categories=3, per_split=5, seed=7)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_plan_build_matches_what_build_writes_without_writing(tmp_path):
    """plan_build's per-split counts, shard sizes and skipped sketches equal a real build's; it writes nothing."""
    from shardgen.dryrun import plan_build
    from shardgen.npz import object_array
    from tests.helpers import write_npz

    src = tmp_path / "src"
    write_samples(src, categories=3, per_split=30, seed=2)
    good = np.array([[0, 0, 0], [5, 5, 0], [3, -2, 1]], np.int16)
    write_npz(
        src / "zebra.npz", train=object_array([good, np.zeros((0, 3), np.int16), good]), valid=object_array([good])
    )
    options = BuildOptions(render=RenderOptions(size=64), shard_size=40, limit=25)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    plan = plan_build(src, options)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    result = build(src, tmp_path / "out", options, procs=1)
    splits = result.manifest["splits"]
    assert plan.classes == result.manifest["classes"]
    assert plan.counts == {split: info["count"] for split, info in splits.items()}
    assert plan.shard_counts == {split: [s["count"] for s in info["shards"]] for split, info in splits.items()}
    assert plan.skipped == result.manifest["skipped"]
    actual = sum(s["bytes"] for info in splits.values() for s in info["shards"])
    assert abs(sum(plan.estimated_bytes.values()) - actual) < 0.25 * actual


def test_size_sample_follows_class_counts():
    """The dry run's size sample takes from each class in proportion to its count, at most `sample` in all."""
    from shardgen.dryrun import _proportional_sample

    reservoirs = [[("train", i, None) for i in range(64)], [("train", i, None) for i in range(10)]]
    picked = _proportional_sample(reservoirs, [9_900, 100], 64)
    assert len(picked) == 64
    assert sum(1 for p in picked if p[0] == 1) == 1
    assert len({p[:3] for p in picked}) == 64  # no candidate picked twice


def test_any_executor_works_and_gives_the_same_bytes(sample_src, tmp_path):
    """The orchestrator only needs a concurrent.futures.Executor (as Dask's is): threads give the same shards."""
    from concurrent.futures import ThreadPoolExecutor

    options = BuildOptions(render=RenderOptions(size=32), shard_size=100, splits=("valid",))
    with ThreadPoolExecutor(2) as executor:
        build(sample_src, tmp_path / "threads", options, executor=executor, procs=2)
    build(sample_src, tmp_path / "procs", options, procs=2)
    assert shard_bytes(tmp_path / "threads") == shard_bytes(tmp_path / "procs")


def test_build_works_from_inside_a_running_event_loop(sample_src, tmp_path):
    """Called from async code (a notebook), build runs its own loop in a thread and gives the same shards."""
    import asyncio

    options = BuildOptions(render=RenderOptions(size=32), shard_size=100, splits=("valid",))

    async def notebook_cell():
        return build(sample_src, tmp_path / "inside", options, procs=1)

    result = asyncio.run(notebook_cell())
    assert result.manifest["splits"]["valid"]["count"] == 240
    build(sample_src, tmp_path / "outside", options, procs=1)
    assert shard_bytes(tmp_path / "inside") == shard_bytes(tmp_path / "outside")


def test_a_reused_executor_never_serves_a_previous_build_s_store(tmp_path):
    """Rebuilding DST with --overwrite from other inputs on the same executor renders the new inputs."""
    from concurrent.futures import ThreadPoolExecutor

    first, second = tmp_path / "first", tmp_path / "second"
    write_samples(first, categories=2, per_split=20, seed=1)
    write_samples(second, categories=2, per_split=20, seed=2)
    options = BuildOptions(render=RenderOptions(size=32), splits=("valid",))
    with ThreadPoolExecutor(2) as executor:
        build(first, tmp_path / "out", options, executor=executor, procs=2)
        build(second, tmp_path / "out", options, executor=executor, procs=2, overwrite=True)
    build(second, tmp_path / "fresh", options, procs=1)
    assert shard_bytes(tmp_path / "out") == shard_bytes(tmp_path / "fresh")


def test_a_pool_that_broke_is_stopped_by_killing_its_workers(tmp_path, monkeypatch):
    """An attempt whose pool broke (WorkerError) stops it with kill=True: a plain shutdown would wait forever
    for a worker the pool started as it broke (see executor.stop_pool)."""
    stops = []
    monkeypatch.setattr(pipeline, "stop_pool", lambda pool, kill: stops.append(kill))

    async def broken(sources):
        raise WorkerError("a render worker died")

    job = SimpleNamespace(run=broken, executor=None, output=Location.of(tmp_path), state=tmp_path / ".shardgen")
    with pytest.raises(WorkerError):
        pipeline._attempt(job, [], StopOnSignals(), own_pool=True)
    assert stops == [True]
