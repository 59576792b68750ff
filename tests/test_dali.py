"""--dali-index: each shard's ``.idx`` is exactly what DALI's ``wds2idx`` would write for it."""

from __future__ import annotations

import itertools
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from shardgen import tar
from shardgen.dali import index_name, index_path, index_text, member_offsets
from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from tests.helpers import BUILD_ARGS, run_cli, sample_folder

# The line format DALI's reader parses (webdataset_loader.cc, ParseIndexFile): "v1.2 SAMPLES", then
# per sample "EXT OFFSET SIZE NAME" for each member, single spaces, one sample a line.
HEADER = re.compile(r"v1\.2 [1-9][0-9]*\n")
COMPONENT = r"[^ .\n][^ \n]* [0-9]+ [0-9]+ [^ \n]+"
SAMPLE = re.compile(rf"{COMPONENT}( {COMPONENT})*\n")


def wds2idx(path) -> str:
    """What DALI's ``tools/wds2idx.py`` writes for the archive at ``path`` (its tarfile code path)."""
    with tarfile.open(path) as archive:
        members = [member for member in archive if member.isreg()]
    by_key = itertools.groupby(members, key=lambda member: member.name.split(".", 1)[0])
    lines = [
        " ".join(f"{m.name.split('.', 1)[1]} {m.offset_data} {m.size} {m.name}" for m in group) for _, group in by_key
    ]
    return f"v1.2 {len(lines)}\n" + "".join(line + "\n" for line in lines)


def assert_dali_format(text: str) -> None:
    """``text`` follows the documented line format exactly, with the declared number of samples."""
    header, *lines = text.split("\n")
    assert HEADER.fullmatch(header + "\n")
    assert lines[-1] == "" and len(lines) - 1 == int(header.split()[1])
    for line in lines[:-1]:
        assert SAMPLE.fullmatch(line + "\n"), line
        offsets = [int(offset) for offset in line.split()[1::4]]
        assert all(offset % tar.BLOCK == 0 for offset in offsets)


@pytest.mark.parametrize("sizes", [[0, 1, 2], [511, 512, 513], [1, 4096, 7, 100_000]])
def test_offsets_of_packed_members_match_tarfile(tmp_path, sizes):
    """Members packed back to back get the data offsets and sizes tarfile reads from the archive."""
    members = [(f"k{i // 2:03d}.{'png' if i % 2 == 0 else 'strokes.npy'}", b"x" * size) for i, size in enumerate(sizes)]
    body = b"".join(tar.member(name, data) for name, data in members)
    path = tmp_path / "a.tar"
    path.write_bytes(body + tar.end_of_archive(len(body)))
    text = index_text(member_offsets([(name, len(data)) for name, data in members]))
    assert text == wds2idx(path)
    assert_dali_format(text)


def test_offsets_continue_from_a_start():
    """Offsets of a later piece of a shard count from where that piece starts."""
    first = list(member_offsets([("a.png", 10), ("a.cls", 1)]))
    rest = list(member_offsets([("b.png", 600)], start=4 * tar.BLOCK))
    assert [offset for _, offset, _ in first + rest] == [512, 1536, 2560]


def test_index_is_named_like_wds2idx_names_it():
    """``train-000003.tar`` gets ``train-000003.idx`` beside it."""
    assert index_path(Path("/d/train-000003.tar")) == Path("/d/train-000003.idx")


OPTIONS = BuildOptions(render=RenderOptions(size=16, strokes=True), shard_size=10, dali_index=True)


@pytest.fixture(scope="module")
def dali_src(tmp_path_factory) -> Path:
    return sample_folder(tmp_path_factory, "dali-npz", categories=3, per_split=9, seed=4)


@pytest.fixture(scope="module")
def dali_build(dali_src, tmp_path_factory) -> Path:
    """A build with --dali-index and --with-strokes: several chunks a shard, several shards a split."""
    dst = tmp_path_factory.mktemp("dali-build")
    build(dali_src, dst, OPTIONS, procs=2, chunk_size=4)
    return dst


def shard_paths(dst) -> list[Path]:
    return sorted(Path(dst).glob("*.tar"))


def test_every_shard_has_the_index_wds2idx_would_write(dali_build):
    """Each shard's .idx equals wds2idx's output for it: extension, data offset, size and name of every member."""
    shards = shard_paths(dali_build)
    assert len(shards) == 9
    for shard in shards:
        assert index_path(shard).read_text() == wds2idx(shard), shard.name


def test_every_index_follows_the_line_format(dali_build):
    """Every .idx is a version line with the sample count, then one line of components per sample."""
    for shard in shard_paths(dali_build):
        text = index_path(shard).read_text()
        assert_dali_format(text)
        assert text.split("\n")[1].split(" ")[0::4] == ["png", "cls", "json", "strokes.npy"]


def test_no_index_without_the_option(small_build):
    """A default build writes no .idx and records no dali_index option."""
    assert not list(Path(small_build).glob("*.idx"))
    assert "dali_index" not in (Path(small_build) / "manifest.json").read_text()


@pytest.mark.slow
def test_rerun_writes_a_deleted_index_again(dali_src, dali_build, tmp_path):
    """A shard whose .idx went missing is rendered again on a rerun, index and all, with the same bytes."""
    dst = tmp_path / "copy"
    shutil.copytree(dali_build, dst)
    shard = shard_paths(dst)[0]
    before, manifest = shard.read_bytes(), (dst / "manifest.json").read_bytes()
    index_path(shard).unlink()
    result = build(dali_src, dst, OPTIONS, procs=1)
    assert result.shards_written == 1 and shard.read_bytes() == before
    assert index_path(shard).read_text() == wds2idx(shard)
    assert (dst / "manifest.json").read_bytes() == manifest


@pytest.mark.slow
def test_cli_option_writes_the_indexes(dali_src, tmp_path):
    """``shardgen build --dali-index`` writes one .idx per shard, and the card names the option."""
    result = run_cli("build", dali_src, tmp_path / "out", "--dali-index", "--size", "16", "--procs", "1", "-q")
    assert result.returncode == 0, result.stderr
    shards = shard_paths(tmp_path / "out")
    assert shards and all(index_path(shard).read_text() == wds2idx(shard) for shard in shards)
    assert "--dali-index" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.slow
def test_s3_build_uploads_each_index_beside_its_shard(sample_src, moto, tmp_path):
    """With DST on object storage, every shard object has its .idx object, as wds2idx would write it."""
    moto.upload(sample_src, "s3://dali-index/npz")
    args = ("build", "s3://dali-index/npz", "s3://dali-index/shards", *BUILD_ARGS, "--work-dir", tmp_path / "work")
    result = run_cli(*args, "--dali-index", env=moto.env)
    assert result.returncode == 0, result.stderr
    objects = moto.objects("dali-index/shards")
    shards = [name for name in objects if name.endswith(".tar")]
    assert shards and sorted(name for name in objects if name.endswith(".idx")) == sorted(map(index_name, shards))
    for name in shards:
        (tmp_path / name).write_bytes(objects[name])
        assert objects[index_name(name)].decode() == wds2idx(tmp_path / name), name
    assert not list((tmp_path / "work").rglob("*.idx"))  # uploaded, not left behind
