"""Inputs and outputs behind fsspec URLs: a real S3 endpoint (moto_server) gives the same build as a folder."""

from __future__ import annotations

import pytest

from shardgen.errors import UsageError
from shardgen.location import Location, parse_storage_options
from tests.helpers import BUILD_ARGS, run_cli, shard_bytes


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["anon=true"], {"anon": True}),
        (["endpoint_url=http://127.0.0.1:9000"], {"endpoint_url": "http://127.0.0.1:9000"}),
        (
            ["max_concurrency=4", 'client_kwargs={"region_name": "eu-west-1"}'],
            {"max_concurrency": 4, "client_kwargs": {"region_name": "eu-west-1"}},
        ),
        (["profile=a=b"], {"profile": "a=b"}),
    ],
    ids=["bool", "string", "number-and-object", "equals-in-value"],
)
def test_storage_options_parse_json_values(items, expected):
    """KEY=VALUE pairs become fsspec keyword arguments; values that are JSON are parsed."""
    assert parse_storage_options(items) == expected


@pytest.mark.parametrize("item", ["anon", "=true"], ids=["no-equals", "no-key"])
def test_storage_option_without_key_is_a_usage_error(item):
    """A storage option that is not KEY=VALUE is refused, naming it."""
    with pytest.raises(UsageError, match=repr(item)):
        parse_storage_options([item])


def test_local_location_writes_atomically_and_lists_files(tmp_path):
    """A local Location writes small objects through a temp file and lists only finished files."""
    folder = Location.of(tmp_path)
    folder.write_atomic("a.json", b"{}")
    (tmp_path / "sub").mkdir()
    assert folder.list() == ["a.json"] and folder.read_bytes("a.json") == b"{}"
    folder.delete("a.json")
    folder.delete("a.json")  # deleting what is gone is not an error
    assert folder.list() == []


@pytest.mark.slow
def test_s3_source_builds_the_same_shards(sample_src, reference_build, moto, tmp_path):
    """SRC s3://bucket/npz (endpoint and keys from the AWS_* environment) builds what the local folder builds."""
    moto.upload(sample_src, "s3://src-env/npz")
    dst = tmp_path / "out"
    result = run_cli("build", "s3://src-env/npz", dst, *BUILD_ARGS, env=moto.env)
    assert result.returncode == 0, result.stderr
    assert shard_bytes(dst) == shard_bytes(reference_build)


@pytest.mark.slow
def test_s3_quickdraw_source_builds_the_same_shards(moto, tmp_path):
    """QuickDraw .ndjson files under an s3:// prefix build the shards their local folder builds."""
    from shardgen.sample import write_samples

    src = tmp_path / "ndjson"
    write_samples(src, categories=3, per_split=10, seed=3, format="ndjson")
    moto.upload(src, "s3://src-ndjson/drawings")
    args = ("--size", "32", "--shard-size", "20", "--no-progress", "--procs", "2")
    local = run_cli("build", src, tmp_path / "local", *args)
    remote = run_cli("build", "s3://src-ndjson/drawings", tmp_path / "remote", *args, env=moto.env)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    assert shard_bytes(tmp_path / "remote") == shard_bytes(tmp_path / "local")


@pytest.mark.slow
def test_storage_options_reach_the_workers(sample_src, reference_build, moto, tmp_path):
    """--storage-option endpoint_url=... alone (no AWS_ENDPOINT_URL) lets discovery and every worker read S3."""
    moto.upload(sample_src, "s3://src-options/npz")
    env = {**moto.env, "AWS_ENDPOINT_URL": ""}
    dst = tmp_path / "out"
    option = f"endpoint_url={moto.endpoint}"
    result = run_cli("build", "s3://src-options/npz", dst, *BUILD_ARGS, "--storage-option", option, env=env)
    assert result.returncode == 0, result.stderr
    assert shard_bytes(dst) == shard_bytes(reference_build)


def test_missing_s3_input_folder_is_one_line(moto, tmp_path):
    """An S3 prefix that holds nothing: the usual one-line usage error naming the URL."""
    moto.filesystem().mkdir("src-missing")
    result = run_cli("build", "s3://src-missing/npz", tmp_path / "out", env=moto.env)
    assert result.returncode == UsageError.exit_code
    assert result.stderr.strip() == "shardgen: error: s3://src-missing/npz: input folder does not exist (or is a file)"


def test_open_dataset_streams_each_sample_once_from_s3(small_build, moto, monkeypatch):
    """open_dataset("s3://...", "train") reads the shards through fsspec: every sample once, as read locally."""
    from shardgen import open_dataset

    moto.upload(small_build, "s3://read-back/shards")
    for key, value in moto.env.items():
        monkeypatch.setenv(key, value)
    remote = [(meta["class"], meta["index"]) for _, _, meta in open_dataset("s3://read-back/shards", metadata=True)]
    local = [(meta["class"], meta["index"]) for _, _, meta in open_dataset(small_build, metadata=True)]
    assert len(set(remote)) == len(remote) and sorted(remote) == sorted(local)
