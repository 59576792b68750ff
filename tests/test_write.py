"""The write stage: shard digests computed on a worker match the file's bytes."""

from __future__ import annotations

import hashlib

from shardgen.write import file_digests


def test_file_digests_are_size_sha256_and_md5_of_the_file(tmp_path):
    """file_digests reads in blocks and returns what hashlib gives for the whole file."""
    data = bytes(range(256)) * 5000  # more than one 1 MB block
    path = tmp_path / "shard.tar"
    path.write_bytes(data)
    assert file_digests(path) == (len(data), hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())
