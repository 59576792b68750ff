"""shardgen verify: passes on a fresh build, fails naming the shard for each kind of damage."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from shardgen import tar
from shardgen.errors import InputError
from shardgen.verify import verify
from tests.helpers import assert_one_line_error, read_shard, run_cli


@pytest.fixture
def build_copy(small_build, tmp_path) -> Path:
    """A private copy of the small build (without its .shardgen state) that a test may damage."""
    dst = tmp_path / "build"
    shutil.copytree(small_build, dst, ignore=shutil.ignore_patterns(".shardgen"))
    return dst


def assert_fails_naming(dst: Path, name: str, *fragments: str) -> list[str]:
    """Run the CLI; it must exit 1 with problem lines naming ``name`` and a one-line verdict."""
    result = run_cli("verify", dst)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    verdict = result.stderr.strip().splitlines()
    assert len(verdict) == 1 and "FAILED" in verdict[0], result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(name + ":")]
    assert lines, result.stdout
    for fragment in fragments:
        assert any(fragment in line for line in lines), (fragment, result.stdout)
    return result.stdout.splitlines()


def rewrite_shard(dst: Path, name: str, samples: dict[str, dict[str, bytes]], *, keep_count: bool = False) -> None:
    """Write ``samples`` as shard ``name`` and update its bytes and hashes in the manifest and wids
    index, so that verify can only object to the content (and, with keep_count, the count)."""
    data = b"".join(tar.member(f"{key}.{ext}", body) for key, sample in samples.items() for ext, body in sample.items())
    data += tar.end_of_archive(len(data))
    (dst / name).write_bytes(data)
    manifest = json.loads((dst / "manifest.json").read_text())
    split = name.split("-")[0]
    for shard in manifest["splits"][split]["shards"]:
        if shard["file"] == name:
            shard.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
            if not keep_count:
                shard["count"] = len(samples)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    index = json.loads((dst / f"{split}.wids.json").read_text())
    for entry in index["shardlist"]:
        if entry["url"] == name:
            entry.update(filesize=len(data))
    (dst / f"{split}.wids.json").write_text(json.dumps(index))


def test_fresh_build_passes(small_build):
    """A fresh build verifies: exit 0, one line saying OK with what was checked."""
    result = run_cli("verify", small_build)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = f"{small_build}: OK: 3 splits, 18 shards, 180 samples match the manifest"
    assert result.stdout.strip().splitlines() == [verdict]


def test_flipped_byte_is_named(build_copy):
    """One flipped byte in a shard fails verify naming that shard's sha256."""
    path = build_copy / "train-000003.tar"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    lines = assert_fails_naming(build_copy, "train-000003.tar", "sha256 differs")
    assert not [line for line in lines if line.startswith(("train-000002", "valid", "test"))]


def test_stale_md5sum_of_an_older_index_is_named(build_copy):
    """An index as older shardgen wrote it, with an md5sum that is not the intact shard's, is named stale."""
    index = json.loads((build_copy / "train.wids.json").read_text())
    for entry in index["shardlist"]:
        entry["md5sum"] = hashlib.md5((build_copy / entry["url"]).read_bytes()).hexdigest()
    index["shardlist"][1]["md5sum"] = "0" * 32
    (build_copy / "train.wids.json").write_text(json.dumps(index))
    lines = assert_fails_naming(build_copy, "train.wids.json", "md5sum of train-000001.tar differs")
    assert len([line for line in lines if "md5sum" in line]) == 1


def test_shards_are_not_md5_hashed_when_no_index_lists_an_md5sum(build_copy, monkeypatch):
    """With wids indexes as shardgen writes them now (no md5sum), verify reads every shard without md5."""

    def no_md5(*args, **kwargs):
        raise AssertionError("md5 computed although no wids index lists an md5sum")

    monkeypatch.setattr(hashlib, "md5", no_md5)  # verify calls hashlib.md5 through the module
    assert verify(build_copy, procs=1).ok


def test_truncated_shard_is_named(build_copy):
    """A shard cut short fails verify naming the shard, its size and its sample count."""
    path = build_copy / "valid-000001.tar"
    path.write_bytes(path.read_bytes()[:5000])
    assert_fails_naming(build_copy, "valid-000001.tar", "is 5,000 bytes", "holds", "manifest says 10")


def test_deleted_shard_is_named(build_copy):
    """A shard missing from disk fails verify naming it as missing."""
    (build_copy / "test-000005.tar").unlink()
    assert_fails_naming(build_copy, "test-000005.tar", "missing")


def test_shard_with_a_different_sample_count_is_named(build_copy):
    """A shard holding fewer samples than the manifest says (bytes and hash made to agree) is named."""
    samples = read_shard(build_copy / "train-000002.tar")
    del samples[list(samples)[-1]]
    rewrite_shard(build_copy, "train-000002.tar", samples, keep_count=True)
    assert_fails_naming(build_copy, "train-000002.tar", "holds 9 samples, the manifest says 10")


@pytest.mark.parametrize("name", ["train-000099.tar", "train-000001.tar.4242-0a1b2c3d.partial"])
def test_extra_unknown_shard_is_named(build_copy, name):
    """A tar file, or a shard's partial file, in DST that the manifest does not list fails verify naming it."""
    shutil.copy(build_copy / "train-000000.tar", build_copy / name)
    assert_fails_naming(build_copy, name, "unknown shard", "move it away or delete it")


def test_a_verdict_on_unknown_shards_only_does_not_advise_a_rebuild(build_copy):
    """When every problem is an unknown shard the verdict says to move them away; a damaged shard says rebuild."""
    shutil.copy(build_copy / "train-000000.tar", build_copy / "train-000099.tar")
    verdict = run_cli("verify", build_copy).stderr
    assert "move the unknown shards away" in verdict and "rebuild" not in verdict
    (build_copy / "train-000001.tar").write_bytes(b"")
    assert "rebuild the named shards" in run_cli("verify", build_copy).stderr


def test_label_that_disagrees_with_the_classes_is_named(build_copy):
    """A sample whose .cls disagrees with its metadata's category is named with its shard."""
    samples = read_shard(build_copy / "valid-000004.tar")
    key = next(iter(samples))
    label = int(samples[key]["cls"])
    samples[key]["cls"] = b"%d" % ((label + 1) % 3)
    rewrite_shard(build_copy, "valid-000004.tar", samples)
    assert_fails_naming(build_copy, "valid-000004.tar", f"sample {key}: label", "disagrees with its metadata")


def test_undecodable_image_and_duplicate_key_are_found(build_copy):
    """An image that does not decode and a key repeated from another shard are both reported."""
    samples = read_shard(build_copy / "test-000002.tar")
    first = next(iter(samples))
    samples[first]["png"] = b"not a png"
    other = read_shard(build_copy / "test-000001.tar")
    twin = next(iter(other))
    samples[twin] = other[twin]
    rewrite_shard(build_copy, "test-000002.tar", samples)
    result = verify(build_copy, procs=1)
    assert not result.ok
    assert any(p.startswith(f"test-000002.tar: sample {first}: image does not decode") for p in result.problems)
    assert f"test-000002.tar: sample {twin}: key also in test-000001.tar" in result.problems


def test_one_and_two_processes_find_the_same_problems(build_copy):
    """verify gives the same problems whether shards are checked in-process or by a pool."""
    path = build_copy / "valid-000003.tar"
    path.write_bytes(path.read_bytes()[:9000])
    (build_copy / "train-000001.tar").unlink()
    one, two = verify(build_copy, procs=1), verify(build_copy, procs=2)
    assert one.problems == two.problems and len(one.problems) >= 3
    assert one.samples == two.samples < 180


def test_folder_without_a_build_is_a_one_line_error(tmp_path):
    """verify on a folder without manifest.json: exit 2, one line, no traceback."""
    with pytest.raises(InputError):
        verify(tmp_path)
    result = run_cli("verify", tmp_path)
    assert_one_line_error(result, "no manifest.json")


def test_decoder_messages_become_the_problem_not_raw_stderr(build_copy):
    """A PNG with a bad header CRC is reported with libpng's reason; libpng's own line never reaches stderr."""
    samples = read_shard(build_copy / "train-000000.tar")
    first = next(iter(samples))
    png = bytearray(samples[first]["png"])
    png[20] ^= 0x10  # inside IHDR, so its CRC no longer matches
    samples[first]["png"] = bytes(png)
    rewrite_shard(build_copy, "train-000000.tar", samples)
    result = run_cli("verify", build_copy, "--procs", "1")
    assert result.returncode == 1 and "libpng" not in result.stderr, result.stderr
    assert f"train-000000.tar: sample {first}: image does not decode" in result.stdout
    assert "IHDR: CRC error" in result.stdout
