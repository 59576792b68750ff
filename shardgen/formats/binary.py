"""Google's QuickDraw binary format (``*.bin``): little-endian records simply concatenated.

Each record: ``key_id`` u64, ``countrycode`` 2 ASCII bytes, ``recognized`` u8, ``timestamp`` u32
(unix seconds), ``n_strokes`` u16, then per stroke ``n_points`` u16, ``x`` u8[n], ``y`` u8[n].
There is no header and no record length, so a record cut short ends the file: it is reported
with its byte offset and nothing after it can be read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from ..npz import open_regular_file
from .drawing import Drawing, Malformed, Skip, to_stroke3

HEADER = struct.Struct("<Q2sBIH")
COUNT = struct.Struct("<H")


class Truncated(Exception):
    """The file ends inside a record."""


def read(path: Path) -> Iterator[Drawing | Skip]:
    """Every record of ``path``, as a drawing or as the reason it was skipped."""
    with open_regular_file(path) as stream:
        index, offset = 0, 0
        while head := stream.read(HEADER.size):
            try:
                key_id, country, recognized, timestamp, n_strokes = HEADER.unpack(_full(head, HEADER.size))
                strokes, size = _strokes(stream, n_strokes)
            except Truncated:
                yield Skip("offset", offset, "truncated record (the file ends inside it)", index)
                return
            meta = {
                "key_id": str(key_id),
                "countrycode": country.decode("ascii", "replace"),
                "recognized": bool(recognized),
                "timestamp": timestamp,
            }
            try:
                rows, _ = to_stroke3(strokes)
            except Malformed as error:
                yield Skip("offset", offset, error.reason, index)
            else:
                yield Drawing(index, rows, None, meta)
            index, offset = index + 1, offset + HEADER.size + size


def _strokes(stream, count: int) -> tuple[list, int]:
    """``count`` strokes as ``[x, y]`` lists, and how many bytes they took."""
    strokes, size = [], 0
    for _ in range(count):
        (points,) = COUNT.unpack(_full(stream.read(COUNT.size), COUNT.size))
        data = _full(stream.read(2 * points), 2 * points)
        strokes.append([list(data[:points]), list(data[points:])])
        size += COUNT.size + 2 * points
    return strokes, size


def _full(data: bytes, size: int) -> bytes:
    if len(data) < size:
        raise Truncated
    return data
