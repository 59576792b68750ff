"""Lean POSIX ustar member packing, byte-identical to what stdlib ``tarfile`` writes.

``tarfile`` costs about 20 us a member (TarInfo objects, generic field encoding), a large share of
a small image's budget. Every member here differs only in name, size and checksum, so we patch
those fields into a header template that ``tarfile`` itself produced.
"""

from __future__ import annotations

import functools
import tarfile
from collections.abc import Iterable

BLOCK = 512
RECORD = tarfile.RECORDSIZE  # tarfile pads archives to 20 blocks; we do the same
MTIME = 0  # fixed so that output is reproducible


def _template() -> bytearray:
    info = tarfile.TarInfo("")
    info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = MTIME, 0o644, 0, 0, "", ""
    return bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))


_TEMPLATE = bytes(_template())
# The header split around the fields we fill in (name 0-100, size 124-136, checksum 148-156), and
# the checksum of everything else (the checksum field counts as eight spaces), so a member costs a
# few small joins and sums, not a 512-byte sum.
_MIDDLE, _TAIL = _TEMPLATE[100:124], _TEMPLATE[136:148]
_REST = _TEMPLATE[156:]
_BASE_SUM = sum(_MIDDLE) + sum(_TAIL) + sum(_REST) + 8 * ord(" ")
_PADDING = [b"\0" * n for n in range(BLOCK)]


def member(name: str, data: bytes) -> bytes:
    """One tar member: a 512-byte header, ``data``, and zero padding to a block boundary."""
    return sample(name, [("", data)])


def sample(key: str, members: Iterable[tuple[str, bytes]]) -> bytes:
    """A sample's tar members, named ``key + ext`` for each ``(ext, data)``, back to back.

    One bytes object, so a worker writes a sample with one call rather than three per member. The
    key's bytes and their sum are computed once a sample, an extension's once a process: the
    header of a member then costs two small formats (measured: 5.8 -> 2.6 us a 3-member sample).
    """
    key_bytes = key.encode("ascii")
    key_sum = sum(key_bytes)
    parts: list[bytes] = []
    for ext, data in members:
        ext_bytes, ext_sum = _extension(ext)
        length = len(key_bytes) + len(ext_bytes)
        if length > 100:
            raise ValueError(f"tar member name longer than 100 bytes: {key + ext!r}")
        size = b"%011o\0" % len(data)
        checksum = b"%06o\0 " % (_BASE_SUM + key_sum + ext_sum + sum(size))
        parts += (key_bytes, ext_bytes, _PADDING[100 - length], _MIDDLE, size, _TAIL, checksum, _REST)
        parts += (data, _PADDING[-len(data) % BLOCK])
    return b"".join(parts)


@functools.lru_cache(maxsize=64)
def _extension(ext: str) -> tuple[bytes, int]:
    """A member name's extension as ASCII bytes, and their sum (its share of the header checksum)."""
    encoded = ext.encode("ascii")
    return encoded, sum(encoded)


def end_of_archive(size_so_far: int) -> bytes:
    """The two zero blocks that end an archive, padded to a full record as ``tarfile`` does."""
    size = size_so_far + 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-size % RECORD))
