"""The lean tar member writer produces exactly what stdlib tarfile writes."""

from __future__ import annotations

import io
import tarfile

import pytest

from shardgen import tar


def _tarfile_archive(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("sizes", [[0], [1, 511, 512, 513], [10_000, 3, 70_000]])
def test_members_are_byte_identical_to_tarfile(sizes):
    """Headers, padding and end-of-archive match tarfile for sizes around block boundaries."""
    members = [(f"train-0001-{i:08d}.png", bytes([i % 251]) * size) for i, size in enumerate(sizes)]
    ours = b"".join(tar.member(name, data) for name, data in members)
    ours += tar.end_of_archive(len(ours))
    assert ours == _tarfile_archive(members)


def test_a_sample_is_its_members_named_key_dot_ext_as_tarfile_writes_them():
    """tar.sample packs (ext, data) pairs as members KEY.EXT, byte-identical to tarfile's."""
    members = [(".png", b"\x89" * 700), (".cls", b"3"), (".json", b"{}" * 256), (".strokes.npy", b"")]
    ours = tar.sample("valid-0002-00000017", members)
    ours += tar.end_of_archive(len(ours))
    assert ours == _tarfile_archive([(f"valid-0002-00000017{ext}", data) for ext, data in members])


def test_overlong_names_are_refused():
    """ustar names are at most 100 bytes; longer ones raise instead of being truncated."""
    with pytest.raises(ValueError):
        tar.member("x" * 101, b"")
