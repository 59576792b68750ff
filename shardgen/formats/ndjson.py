"""Google's QuickDraw ndjson (``*.ndjson``, ``*.ndjson.gz``): one JSON object a line.

Each object has ``key_id`` (a 64-bit integer written as a string), ``word``, ``countrycode``,
``timestamp``, ``recognized`` and ``drawing``, simplified (``[[x...], [y...]]`` per stroke) or raw
(``[[x...], [y...], [t...]]``). Lines are read one at a time (gzip decompressed as a stream), so
memory stays per line whatever the file's size. A plain file can also be read a byte range at a
time (:class:`LineRange`), by several workers at once (see ``formats.ranges``).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..npz import open_regular_file
from .drawing import Drawing, Malformed, Skip, read_meta, to_stroke3

# A line longer than this is not a drawing (the longest raw QuickDraw lines are well under 1 MB).
MAX_LINE = 16 << 20


@dataclass
class LineRange:
    """The lines of a plain ``.ndjson`` file that begin in bytes ``[start, stop)``: adjacent ranges
    read every line once. :func:`read` fills in where the first of them begins and how many it read."""

    start: int = 0
    stop: int | None = None  # None: to the end of the file
    first: int = 0  # the offset of the range's first line
    count: int = 0  # lines read so far, blank ones included


def read(path: Path, lines: LineRange | None = None) -> Iterator[Drawing | Skip]:
    """Every line of ``path``, as a drawing or as the reason it was skipped (blank lines are neither).

    With ``lines``, only the lines of that byte range (a plain file only), numbered from its first.
    """
    lines = lines or LineRange()
    raw = open_regular_file(path)  # never blocks on a FIFO named like an input
    with gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw as stream, raw:
        position = lines.first = _skip_to_line(stream, lines.start)
        for index, (line, size) in enumerate(_lines(stream)):
            if lines.stop is not None and position >= lines.stop:
                return
            position += size
            lines.count = index + 1
            if line is None:
                yield Skip("line", index + 1, f"line longer than {MAX_LINE:,} bytes", index)
            elif line.strip():
                try:
                    yield parse_record(line, index)
                except Malformed as error:
                    yield Skip("line", index + 1, error.reason, index)


def _skip_to_line(stream, start: int) -> int:
    """Move to the first line that begins at or after byte ``start``; return its offset."""
    if start == 0:
        return 0
    stream.seek(start - 1)  # a line begins at `start` if the byte before it ends one
    while (piece := stream.readline(MAX_LINE)) and not piece.endswith(b"\n"):
        pass
    return stream.tell()


def lines_before(path: Path, offset: int) -> int:
    """How many lines of a plain file begin before byte ``offset``, which begins one."""
    count = 0
    with open_regular_file(path) as stream:
        while offset > 0 and (block := stream.read(min(offset, 1 << 20))):
            count += block.count(b"\n")
            offset -= len(block)
    return count


def _lines(stream) -> Iterator[tuple[bytes | None, int]]:
    """Each line of ``stream`` and its length in bytes, read with a bounded buffer; the line is
    ``None`` if it is longer than ``MAX_LINE``."""
    while line := stream.readline(MAX_LINE):
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            size = len(line)
            while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                size += len(rest)
            yield None, size + len(rest)
        else:
            yield line, len(line)


def parse_record(text: bytes, index: int) -> Drawing:
    """One JSON object (an ndjson line) as a drawing; raises :class:`Malformed`."""
    try:
        record = json.loads(text)
    except ValueError as error:  # also UnicodeDecodeError
        raise Malformed(f"not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise Malformed(f"not a JSON object but a {type(record).__name__}")
    return parse_fields(record, index)


def parse_fields(record: dict, index: int) -> Drawing:
    """A record's ``drawing`` and metadata as a :class:`Drawing`; raises :class:`Malformed`."""
    if "drawing" not in record:
        raise Malformed("missing drawing")
    rows, times = to_stroke3(record["drawing"])
    return Drawing(index, rows, times, read_meta(record))
