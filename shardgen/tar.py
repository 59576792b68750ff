"""Lean POSIX ustar member packing, byte-identical to what stdlib ``tarfile`` writes.

``tarfile`` costs about 20 us a member (TarInfo objects, generic field encoding), a large share of
a small image's budget. Every member here differs only in name, size and checksum, so we patch
those fields into a header template that ``tarfile`` itself produced.
"""

from __future__ import annotations

import tarfile

BLOCK = 512
RECORD = tarfile.RECORDSIZE  # tarfile pads archives to 20 blocks; we do the same
MTIME = 0  # fixed so that output is reproducible


def _template() -> bytearray:
    info = tarfile.TarInfo("")
    info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = MTIME, 0o644, 0, 0, "", ""
    return bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))


_TEMPLATE = _template()
_NAME, _SIZE, _CHKSUM = slice(0, 100), slice(124, 136), slice(148, 156)


def member(name: str, data: bytes) -> bytes:
    """One tar member: a 512-byte header, ``data``, and zero padding to a block boundary."""
    encoded = name.encode("ascii")
    if len(encoded) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    header = _TEMPLATE.copy()
    header[_NAME] = encoded.ljust(100, b"\0")
    header[_SIZE] = b"%011o\0" % len(data)
    header[_CHKSUM] = b" " * 8
    header[_CHKSUM] = b"%06o\0 " % sum(header)
    padding = -len(data) % BLOCK
    return b"".join((header, data, b"\0" * padding))


def end_of_archive(size_so_far: int) -> bytes:
    """The two zero blocks that end an archive, padded to a full record as ``tarfile`` does."""
    size = size_so_far + 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-size % RECORD))
