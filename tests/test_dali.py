"""--dali-index: each shard's ``.idx`` is exactly what DALI's ``wds2idx`` would write for it."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from shardgen import tar
from shardgen.dali import index_path, index_text, member_offsets

# The line format DALI's reader parses (webdataset_loader.cc, ParseIndexFile): "v1.2 SAMPLES", then
# per sample "EXT OFFSET SIZE NAME" for each member, single spaces, one sample a line.
HEADER = re.compile(r"v1\.2 [1-9][0-9]*\n")
COMPONENT = r"[^ .\n][^ \n]* [0-9]+ [0-9]+ [^ \n]+"
SAMPLE = re.compile(rf"{COMPONENT}( {COMPONENT})*\n")


def wds2idx(path) -> str:
    """What DALI's ``tools/wds2idx.py`` writes for the archive at ``path`` (its tarfile code path)."""
    samples: list[list[str]] = []
    last = None
    with tarfile.open(path) as archive:
        for member in archive:
            if not member.isreg():
                continue
            key, ext = member.name.split(".", 1)
            if key != last:
                samples.append([])
                last = key
            samples[-1].append(f"{ext} {member.offset_data} {member.size} {member.name}")
    return f"v1.2 {len(samples)}\n" + "".join(" ".join(s) + "\n" for s in samples)


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


def test_offsets_continue_from_a_start(tmp_path):
    """Offsets of a later piece of a shard count from where that piece starts."""
    first = list(member_offsets([("a.png", 10), ("a.cls", 1)]))
    rest = list(member_offsets([("b.png", 600)], start=4 * tar.BLOCK))
    assert [offset for _, offset, _ in first + rest] == [512, 1536, 2560]


def test_index_is_named_like_wds2idx_names_it():
    """``train-000003.tar`` gets ``train-000003.idx`` beside it."""
    assert index_path(Path("/d/train-000003.tar")) == Path("/d/train-000003.idx")
