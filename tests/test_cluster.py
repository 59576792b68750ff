"""Builds on a real Dask cluster (``--scheduler``): the same bytes as a local build, whatever happens to workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from shardgen import cluster
from shardgen.errors import InputError, UsageError, WorkerError
from tests.helpers import (
    BUILD_ARGS,
    ROOT,
    assert_one_line_error,
    leftovers,
    published_files,
    run_cli,
    shard_bytes,
    start_cli,
    wait_for,
)
from tests.servers import dask_cluster

# BUILD_ARGS without --procs: on a cluster, tasks in flight default to the cluster's threads.
CLUSTER_ARGS = tuple(arg for arg in BUILD_ARGS if arg not in ("--procs", "2"))


@pytest.mark.slow
def test_cluster_build_equals_local_build(sample_src, reference_build, dask_cluster, tmp_path):
    """Shards, manifest and wids indexes built on two Dask workers equal a local --procs 2 build byte for byte."""
    dst = tmp_path / "out"
    result = run_cli("build", sample_src, dst, *CLUSTER_ARGS, "--scheduler", dask_cluster.address)
    assert result.returncode == 0, result.stderr + dask_cluster.logs()
    assert published_files(dst) == published_files(reference_build)


@pytest.mark.slow
def test_killed_worker_build_completes_identically(sample_src, reference_build, tmp_path):
    """SIGKILL one of two Dask workers mid-build: its tasks rerun on the other, the output is identical."""
    slow = {"SHARDGEN_FAULT": "sleep-per-chunk:seconds=0.05"}
    with dask_cluster(tmp_path / "dask", workers=2, env=slow) as dask:
        dst = tmp_path / "out"
        build = start_cli("build", sample_src, dst, *CLUSTER_ARGS, "--scheduler", dask.address)
        wait_for((dst / "train-000000.tar").exists, build)
        os.killpg(dask.workers[0].pid, signal.SIGKILL)
        _, stderr = build.communicate(timeout=300)
        assert build.returncode == 0, stderr + dask.logs()
        assert dask.workers[0].wait(10) != 0
    assert published_files(dst) == published_files(reference_build)
    assert leftovers(dst) == []


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare(), reason="needs `unshare -m` (a mount namespace) to hide a folder from a worker")
def test_worker_that_cannot_reach_the_store_fails_the_build_at_start(sample_src, tmp_path):
    """A worker that sees another folder at the state folder's path: one line naming it, before any rendering."""
    hidden = tmp_path / "shared"
    hidden.mkdir()
    # The second worker runs in its own mount namespace, where an empty tmpfs covers `hidden`.
    blind = ("unshare", "-m", "sh", "-c", f'mount -t tmpfs none "{hidden}" && exec "$0" "$@"')
    with dask_cluster(tmp_path / "dask", workers=1) as dask:
        dask.add_worker(prefix=blind)
        dask.wait_for_workers(2)
        dst = hidden / "out"
        result = run_cli("build", sample_src, dst, *CLUSTER_ARGS, "--scheduler", dask.address)
    assert_one_line_error(result, str(dst / ".shardgen"), "cannot reach the build's state folder", "same path", code=1)
    assert shard_bytes(dst) == {}


@pytest.mark.slow
def test_worker_errors_stay_shardgen_errors(tmp_path, dask_cluster):
    """A corrupt input read on a Dask worker is the usual one-line InputError naming the file."""
    src = tmp_path / "npz"
    src.mkdir()
    (src / "cat.npz").write_bytes(b"not a zip file")
    result = run_cli("build", src, tmp_path / "out", *CLUSTER_ARGS, "--scheduler", dask_cluster.address)
    assert_one_line_error(result, "cat.npz", "not a valid .npz", code=InputError.exit_code)


def test_missing_distributed_names_the_extra(sample_src, tmp_path):
    """Without the distributed package, --scheduler is a one-line error naming shardgen[dask]."""
    fake = tmp_path / "site"
    (fake / "distributed").mkdir(parents=True)
    (fake / "distributed" / "__init__.py").write_text("raise ImportError('No module named distributed')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)])}
    result = run_cli("build", sample_src, tmp_path / "out", "--scheduler", "tcp://127.0.0.1:1", env=env)
    assert_one_line_error(result, "pip install 'shardgen[dask]'", code=UsageError.exit_code)


def test_unreachable_scheduler_is_a_usage_error(sample_src, tmp_path, monkeypatch):
    """No scheduler at the address: a UsageError naming it, after a short wait."""
    from shardgen import build
    from tests.servers import free_port

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1)
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(UsageError, match=f"cannot connect to the Dask scheduler at {address}"):
        build(sample_src, tmp_path / "out", scheduler=address)


def test_killed_worker_becomes_worker_error():
    """Dask's KilledWorker (a task's workers died too often) is reported as a WorkerError."""
    from distributed.scheduler import KilledWorker

    error = cluster.translate_error(KilledWorker("render_chunk-1", None, 3))
    assert isinstance(error, WorkerError) and "rerun to resume" in str(error)


@pytest.mark.slow
def test_cluster_builds_s3_to_s3(sample_src, reference_build, moto, dask_cluster, tmp_path):
    """Workers with the AWS_* environment read s3://.../npz and upload the shards: the objects equal a local build."""
    moto.upload(sample_src, "s3://cluster-s3/npz")
    args = ("s3://cluster-s3/npz", "s3://cluster-s3/shards", "--work-dir", tmp_path / "work")
    result = run_cli("build", *args, *CLUSTER_ARGS, "--scheduler", dask_cluster.address, env=moto.env)
    assert result.returncode == 0, result.stderr
    assert moto.objects("cluster-s3/shards") == published_files(reference_build)


@pytest.mark.slow
def test_worker_that_cannot_reach_the_object_store_fails_at_start(sample_src, moto, tmp_path):
    """A worker whose S3 endpoint is wrong: the build stops at start, in one line naming the DST URL."""
    from tests.servers import free_port

    moto.upload(sample_src, "s3://cluster-blind/npz")
    wrong = {**moto.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1"}
    with dask_cluster(tmp_path / "dask", workers=1, env=moto.env) as dask:
        dask.add_worker(env=wrong)
        dask.wait_for_workers(2)
        args = ("s3://cluster-blind/npz", "s3://cluster-blind/shards", "--work-dir", tmp_path / "work")
        result = run_cli("build", *args, *CLUSTER_ARGS, "--scheduler", dask.address, env=moto.env)
    assert_one_line_error(result, "s3://cluster-blind/shards/.shardgen", "credentials and endpoint", code=1)


@pytest.mark.slow
def test_scheduler_lost_midway_is_a_worker_error(sample_src, tmp_path):
    """The scheduler dies mid-build: exit 1, a WorkerError saying to rerun; never a hang or a bare CancelledError."""
    from tests.servers import stop

    with dask_cluster(tmp_path / "dask", workers=2, env={"SHARDGEN_FAULT": "sleep-per-chunk:seconds=0.05"}) as dask:
        dst = tmp_path / "out"
        build = start_cli("build", sample_src, dst, *CLUSTER_ARGS, "--scheduler", dask.address)
        wait_for((dst / "train-000000.tar").exists, build)
        stop(dask.scheduler, signal.SIGKILL)
        _, stderr = build.communicate(timeout=120)
    assert build.returncode == WorkerError.exit_code, stderr
    # (distributed logs its own reconnect attempts above our line)
    assert stderr.strip().splitlines()[-1].startswith("shardgen: error: the Dask cluster dropped a task"), stderr


@pytest.mark.slow
def test_cluster_reads_a_large_ndjson_file_in_ranges_to_the_one_pass_bytes(dask_cluster, tmp_path, monkeypatch):
    """On two Dask workers a large ndjson file is read in two byte ranges, joined on a worker, and
    builds what one pass builds."""
    from shardgen import orchestrate
    from shardgen.formats import ranges
    from shardgen.options import BuildOptions, RenderOptions
    from shardgen.pipeline import build
    from shardgen.sample import write_samples

    write_samples(tmp_path / "gen", categories=2, per_split=20, format="ndjson")
    (tmp_path / "src").mkdir()
    lines = [p.read_text() for p in sorted((tmp_path / "gen").glob("*.ndjson"))]
    (tmp_path / "src" / "cat.ndjson").write_text("".join(lines))
    options = BuildOptions(render=RenderOptions(size=16))
    build(tmp_path / "src", tmp_path / "one", options, procs=1)
    monkeypatch.setattr(ranges, "MIN_RANGE_BYTES", 1024)
    planned = []
    monkeypatch.setattr(
        orchestrate, "byte_ranges", lambda *args, real=ranges.byte_ranges: planned.append(real(*args)) or planned[-1]
    )
    build(tmp_path / "src", tmp_path / "dask", options, scheduler=dask_cluster.address)
    assert [len(r) for r in planned] == [2]
    assert published_files(tmp_path / "dask") == published_files(tmp_path / "one")
