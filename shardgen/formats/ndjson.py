"""Google's QuickDraw ndjson (``*.ndjson``, ``*.ndjson.gz``): one JSON object a line.

Each object has ``key_id`` (a 64-bit integer written as a string), ``word``, ``countrycode``,
``timestamp``, ``recognized`` and ``drawing``, simplified (``[[x...], [y...]]`` per stroke) or raw
(``[[x...], [y...], [t...]]``). Lines are read one at a time (gzip decompressed as a stream), so
memory stays per line whatever the file's size.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from ..npz import open_regular_file
from .drawing import Drawing, Malformed, Skip, read_meta, to_stroke3

# A line longer than this is not a drawing (the longest raw QuickDraw lines are well under 1 MB).
MAX_LINE = 16 << 20


def read(path: Path) -> Iterator[Drawing | Skip]:
    """Every line of ``path``, as a drawing or as the reason it was skipped (blank lines are neither)."""
    raw = open_regular_file(path)  # never blocks on a FIFO named like an input
    with gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw as lines, raw:
        for index, line in enumerate(_lines(lines)):
            if line is None:
                yield Skip("line", index + 1, f"line longer than {MAX_LINE:,} bytes", index)
            elif line.strip():
                try:
                    yield parse_record(line, index)
                except Malformed as error:
                    yield Skip("line", index + 1, error.reason, index)


def _lines(stream) -> Iterator[bytes | None]:
    """Lines of ``stream``, each read with a bounded buffer; ``None`` for a line over ``MAX_LINE``."""
    while line := stream.readline(MAX_LINE):
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield line


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
