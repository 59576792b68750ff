"""DST on object storage (moto_server): the same shards as a local build, never a partial object, resume."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tests.helpers import BUILD_ARGS, published_files, run_cli, start_cli, wait_for

SLOW = {"SHARDGEN_FAULT": "sleep-per-chunk:seconds=0.05"}


@pytest.fixture
def s3_src(sample_src, moto, request):
    """``sample_src`` uploaded to a bucket of this test's own; yields the bucket's name."""
    bucket = request.node.name.replace("_", "-")[:50].strip("-")
    moto.upload(sample_src, f"s3://{bucket}/npz")
    return bucket


def s3_build(moto, bucket, tmp_path, *extra, env=None):
    args = ("build", f"s3://{bucket}/npz", f"s3://{bucket}/shards", *BUILD_ARGS, "--work-dir", tmp_path / "work")
    return run_cli(*args, *extra, env={**moto.env, **(env or {})})


@pytest.mark.slow
def test_s3_build_equals_local_build(s3_src, moto, reference_build, tmp_path):
    """s3://bucket/npz -> s3://bucket/shards: shard objects, manifest and wids indexes equal the local build's files."""
    result = s3_build(moto, s3_src, tmp_path)
    assert result.returncode == 0, result.stderr
    assert moto.objects(f"{s3_src}/shards") == published_files(reference_build)


@pytest.mark.slow
def test_no_partial_object_is_ever_visible_under_a_final_key(s3_src, moto, reference_build, tmp_path):
    """Listing the bucket throughout the build: every shard key seen has its final size, nothing else appears."""
    final = {name: len(data) for name, data in published_files(reference_build).items()}
    fs, seen, done = moto.filesystem(), set(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in fs.ls(f"{s3_src}/shards", detail=True, refresh=True) if fs.exists(f"{s3_src}/shards") else []:
                if entry["type"] == "file":
                    seen.add((entry["name"].rsplit("/", 1)[1], entry["size"]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = s3_build(moto, s3_src, tmp_path)
    finally:
        done.set()
        watcher.join()
    assert result.returncode == 0, result.stderr
    assert any(name.endswith(".tar") for name, _ in seen)  # the watcher did see shards come
    assert {(name, size) for name, size in seen if final.get(name) != size} == set()


@pytest.mark.slow
def test_s3_build_killed_midway_resumes_to_identical_bytes(s3_src, moto, reference_build, tmp_path):
    """SIGKILL an s3 -> s3 build after its first shard: the rerun reuses journaled shards and ends identical."""
    fs = moto.filesystem()
    args = ("build", f"s3://{s3_src}/npz", f"s3://{s3_src}/shards", *BUILD_ARGS, "--work-dir", tmp_path / "work")
    build = start_cli(*args, env={**moto.env, **SLOW})
    wait_for(lambda: fs.exists(f"{s3_src}/shards/.shardgen/journal/train-000000.tar.json"), build)
    os.killpg(build.pid, signal.SIGKILL)
    build.communicate()
    assert not fs.exists(f"{s3_src}/shards/manifest.json")
    rerun = s3_build(moto, s3_src, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert int(rerun.stdout.split("reused ")[1].split(";")[0]) >= 1, rerun.stdout
    assert moto.objects(f"{s3_src}/shards") == published_files(reference_build)


@pytest.mark.slow
def test_rerun_with_other_options_is_refused_on_s3(s3_src, moto, tmp_path):
    """The build's identity lives on the object store: another seed is refused there as it is locally."""
    assert s3_build(moto, s3_src, tmp_path).returncode == 0
    result = s3_build(moto, s3_src, tmp_path, "--seed", "1")
    assert result.returncode == 2
    assert "holds a build with other options (seed: 0 -> 1)" in result.stderr


def test_record_journal_keeps_one_object_per_shard_and_skips_unreadable_ones(tmp_path):
    """Each finished shard is its own record; a damaged record only means that shard is rebuilt."""
    from shardgen.location import Location
    from shardgen.objectstore import RecordJournal
    from shardgen.write import ShardRecord

    journal = RecordJournal(Location.of(tmp_path))
    first, second = (ShardRecord(f"train-00000{i}.tar", 10, 10240, "s" * 64) for i in range(2))
    journal.append(first)
    journal.append(second)
    (tmp_path / "journal" / "train-000001.tar.json").write_text('{"file": "train-0')
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == [
        "train-000000.tar.json",
        "train-000001.tar.json",
    ]
    assert journal.load() == {first.file: first}
