"""Worker-side output files: fragments written whole, shards sealed from them with their digests."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from shardgen import dali, fragments, tar
from shardgen.fragments import fragment_path, partial_path, partial_target, seal_shard, write_fragment, write_shard

SAMPLES = [("a", [(".png", b"x" * 700), (".cls", b"3")]), ("b", [(".png", bytes(range(256)) * 9000), (".cls", b"1")])]
MEMBERS = [(key + ext, data) for key, members in SAMPLES for ext, data in members]


def two_fragments(folder: Path, list_members: bool = False) -> list[Path]:
    """SAMPLES written as the two chunk fragments of shard ``s.tar`` in state folder ``folder``."""
    fragments = [fragment_path(folder, "s.tar", start) for start in (0, 1)]
    fragments[0].parent.mkdir(parents=True)
    write_fragment(fragments[0], iter(SAMPLES[:1]), list_members=list_members)
    write_fragment(fragments[1], iter(SAMPLES[1:]), list_members=list_members)
    return fragments


def failing_after_one_sample():
    """A member stream whose render fails after its first sample."""
    yield SAMPLES[0]
    raise RuntimeError("render failed")


def test_fragment_holds_the_members_as_tar_members_and_its_size_is_returned(tmp_path):
    """write_fragment's file is exactly tar.member of each KEY.EXT, in order, and no temp file stays."""
    path = tmp_path / "x.tar.0"
    size = write_fragment(path, iter(SAMPLES))
    assert path.read_bytes() == b"".join(tar.member(n, d) for n, d in MEMBERS)
    assert size == path.stat().st_size and [p.name for p in tmp_path.iterdir()] == ["x.tar.0"]


def test_a_failed_fragment_leaves_nothing_under_either_name(tmp_path):
    """A member stream that fails half-way leaves neither the fragment nor its temp file."""

    with pytest.raises(RuntimeError):
        write_fragment(tmp_path / "x.tar.0", failing_after_one_sample())
    assert list(tmp_path.iterdir()) == []


def test_seal_joins_fragments_in_order_and_returns_size_and_sha256(tmp_path):
    """The sealed shard is a valid tar of every member in fragment order; digests are of its bytes; fragments go."""
    fragments = two_fragments(tmp_path)
    size, sha256 = seal_shard(fragments, tmp_path / "s.tar")
    data = (tmp_path / "s.tar").read_bytes()
    assert (size, sha256) == (len(data), hashlib.sha256(data).hexdigest())
    with tarfile.open(tmp_path / "s.tar") as archive:
        assert [(m.name, archive.extractfile(m).read()) for m in archive] == MEMBERS
    assert not any(f.exists() for f in fragments) and not list(tmp_path.glob("*.partial"))


def test_seal_rerun_after_the_shard_is_in_place_only_hashes_it(tmp_path):
    """A seal rerun (Dask, after its worker died) that finds the shard sealed returns the same digests."""
    fragments = two_fragments(tmp_path)
    first = seal_shard(fragments, tmp_path / "s.tar")
    data = (tmp_path / "s.tar").read_bytes()
    assert seal_shard(fragments, tmp_path / "s.tar") == first
    assert (tmp_path / "s.tar").read_bytes() == data


class _RemovedWhileRead(type(Path())):
    """A fragment that is there when the seal looks, and gone when it opens it (another run removed it)."""

    def exists(self, **kwargs) -> bool:
        return True


def test_seal_whose_fragment_another_run_removed_meanwhile_hashes_that_run_s_shard(tmp_path):
    """Two runs of one seal (Dask, a worker declared dead that is not): one that finds a fragment gone after the
    other sealed the shard returns that shard's digests and leaves no partial file."""
    fragments = two_fragments(tmp_path)
    first = seal_shard(fragments, tmp_path / "s.tar")
    write_fragment(fragments[0], iter(SAMPLES[:1]))  # the second run had read this one before it went
    assert seal_shard([fragments[0], _RemovedWhileRead(fragments[1])], tmp_path / "s.tar") == first
    assert not list(tmp_path.glob("*.partial"))


def test_partial_names_are_unique_per_seal_and_name_their_shard(tmp_path):
    """partial_path gives each seal its own NAME.PID-RANDOM.partial; partial_target reads the shard's name back,
    also from an older version's NAME.partial."""
    names = {partial_path(tmp_path / "s.tar").name for _ in range(3)}
    assert len(names) == 3 and {partial_target(name) for name in names} == {"s.tar"}
    assert partial_target("s.tar.partial") == "s.tar" and partial_target("s.tar") is None


def test_seal_with_a_missing_fragment_leaves_no_shard_and_no_partial(tmp_path):
    """A seal that cannot read a fragment fails without a shard under its final or partial name."""
    fragment = tmp_path / "s.tar.0"
    write_fragment(fragment, iter(SAMPLES))
    with pytest.raises(FileNotFoundError):
        seal_shard([fragment, tmp_path / "s.tar.9"], tmp_path / "s.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tar.0"]


def sealed_from_fragments(tmp_path, dali_index: bool = False) -> tuple[tuple[int, str], bytes]:
    """SAMPLES written as two fragments and sealed into ``tmp_path/chunked/s.tar``: digests and bytes."""
    folder = tmp_path / "chunked"
    fragments = two_fragments(folder, list_members=dali_index)
    digests = seal_shard(fragments, folder / "s.tar", dali_index=dali_index)
    return digests, (folder / "s.tar").read_bytes()


def test_a_shard_written_whole_is_the_sealed_shard_of_its_fragments(tmp_path):
    """write_shard gives the same bytes, size and sha256 as fragments joined by seal_shard, and no partial."""
    expected, data = sealed_from_fragments(tmp_path)
    assert write_shard(tmp_path / "s.tar", iter(SAMPLES)) == expected
    assert (tmp_path / "s.tar").read_bytes() == data
    assert not list(tmp_path.glob("*.partial"))


def test_a_shard_written_whole_gets_the_dali_index_of_the_sealed_one(tmp_path):
    """With dali_index, write_shard writes the .idx that the fragments' member lists give the sealed shard."""
    sealed_from_fragments(tmp_path, dali_index=True)
    write_shard(tmp_path / "s.tar", iter(SAMPLES), dali_index=True)
    whole, chunked = (dali.index_path(folder / "s.tar").read_text() for folder in (tmp_path, tmp_path / "chunked"))
    assert whole == chunked


@pytest.mark.parametrize("whole", [True, False], ids=["written whole", "sealed from fragments"])
def test_a_shard_s_pages_go_to_the_disk_as_it_is_written_not_all_at_its_fsync(tmp_path, monkeypatch, whole):
    """Every WRITEBACK_BYTES written, a shard being written or sealed asks the kernel to start writing it out."""
    handed: list[int] = []
    monkeypatch.setattr(fragments, "WRITEBACK_BYTES", 1 << 20)
    monkeypatch.setattr(fragments, "start_writeback", lambda file: handed.append(file.tell()))
    samples = [(f"k{i:03d}", [(".png", bytes([i]) * 100_000)]) for i in range(50)]  # 5 MB in all
    if whole:
        size, _ = write_shard(tmp_path / "s.tar", iter(samples))
    else:
        (tmp_path / "parts").mkdir()
        write_fragment(tmp_path / "parts" / "a", iter(samples[:20]))
        write_fragment(tmp_path / "parts" / "b", iter(samples[20:]))
        size, _ = seal_shard([tmp_path / "parts" / "a", tmp_path / "parts" / "b"], tmp_path / "s.tar")
    assert size >> 20 == 4 and len(handed) >= 3 and size - handed[-1] < 2 << 20  # none left for the fsync alone
    assert all(later - earlier >= 1 << 20 for earlier, later in zip([0, *handed], handed))  # not per sample


def test_a_failed_whole_shard_leaves_nothing_under_either_name(tmp_path):
    """A render that fails half-way through write_shard leaves neither the shard nor its .partial."""

    with pytest.raises(RuntimeError):
        write_shard(tmp_path / "s.tar", failing_after_one_sample())
    assert list(tmp_path.iterdir()) == []
