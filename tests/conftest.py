"""Fixtures: synthetic sketch-rnn inputs made by shardgen itself (tests never read ../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import sample_folder


@pytest.fixture(scope="session")
def sample_src(tmp_path_factory) -> Path:
    """Four categories, 60 sketches in each of train/valid/test."""
    return sample_folder(tmp_path_factory, "npz", categories=4, per_split=60, seed=1)


@pytest.fixture(scope="session")
def small_build(tmp_path_factory) -> Path:
    """A finished build small enough for loader tests: 3 classes x 20 sketches a split, 32 px,
    shards of 10 samples (6 a split, so two DataLoader workers both get shards). Read-only: tests
    that damage it work on a copy."""
    from shardgen.options import BuildOptions, RenderOptions
    from shardgen.pipeline import build

    src = sample_folder(tmp_path_factory, "small-npz", categories=3, per_split=20, seed=2)
    dst = tmp_path_factory.mktemp("small-build")
    build(src, dst, BuildOptions(render=RenderOptions(size=32), shard_size=10), procs=1)
    return dst


@pytest.fixture(scope="session")
def reference_build(sample_src, tmp_path_factory) -> Path:
    """An uninterrupted CLI build of ``sample_src`` with ``helpers.BUILD_ARGS``: what every resumed build must equal."""
    from tests.helpers import BUILD_ARGS, run_cli

    dst = tmp_path_factory.mktemp("reference") / "out"
    result = run_cli("build", sample_src, dst, *BUILD_ARGS)
    assert result.returncode == 0, result.stderr
    return dst


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory, moto):
    """A real ``dask scheduler`` and two ``dask worker --nworkers 1 --nthreads 1`` on 127.0.0.1,
    whose AWS_* environment points at the ``moto`` S3 server."""
    from tests.servers import dask_cluster

    with dask_cluster(tmp_path_factory.mktemp("dask"), env=moto.env) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """moto's S3 server on a free port of 127.0.0.1; tests use buckets of their own."""
    from tests.servers import moto_server

    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server
