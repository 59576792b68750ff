"""QuickDraw drawings, whatever file they came from, become stroke-3 arrays plus their metadata.

Every QuickDraw format holds a drawing as strokes of absolute points: simplified ones as
``[[x...], [y...]]`` (integers 0-255), raw ones as ``[[x...], [y...], [t...]]`` (real-valued
positions, ``t`` in ms). :func:`to_stroke3` turns them into the stroke-3 rows the store holds, the
layout sketch-rnn's ``.npz`` files use, so the same points give the same pixels in every format.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import chain

import numpy as np

from ..read import MAX_COORDINATE

# Metadata every QuickDraw format carries, in the order a sample's JSON lists it.
META_FIELDS = ("key_id", "countrycode", "recognized", "timestamp", "word")
SIMPLIFIED_MAX = 255
NUMBER = {int, float}


class Malformed(Exception):
    """One record cannot be used as a drawing; ``reason`` says why (no location: the reader adds it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Drawing:
    """One valid drawing: its position in the file, stroke-3 rows, per-row times (raw only), metadata."""

    index: int
    rows: np.ndarray
    times: np.ndarray | None
    meta: dict


@dataclass(frozen=True)
class Skip:
    """One record that was left out: where it is (``line`` or ``offset``) and why."""

    where: str  # "line" or "offset"
    at: int
    reason: str
    index: int  # the record's position in the file, counted as drawings are


def to_stroke3(strokes: object) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rows, times)`` of a drawing: float64 stroke-3 rows, and per-row times for raw drawings.

    Rows are offsets from the previous point (the first from the origin) with ``pen_lifted = 1`` on
    each stroke's last point. Raises :class:`Malformed` for anything that is not a usable drawing.
    """
    if not isinstance(strokes, list) or not strokes:
        raise Malformed("no strokes" if isinstance(strokes, list) else "drawing is not a list of strokes")
    arity = _arity(strokes[0])
    columns: list[list] = [[] for _ in range(arity)]
    lengths = []
    for number, stroke in enumerate(strokes):
        if _arity(stroke) != arity:
            raise Malformed(f"stroke {number} has {_describe(stroke)}, stroke 0 has {arity} lists")
        length = len(stroke[0])
        if length == 0:
            raise Malformed(f"stroke {number} is empty")
        if any(len(values) != length for values in stroke):
            raise Malformed(f"stroke {number}: x, y{', t' if arity == 3 else ''} have different lengths")
        for column, values in zip(columns, stroke):
            column.append(values)
        lengths.append(length)
    flat = [list(chain.from_iterable(column)) for column in columns]
    if not set(map(type, chain.from_iterable(flat))) <= NUMBER:  # not str or bool, which numpy would take
        raise Malformed("a coordinate is not a number")
    points = np.array(flat[:2], dtype=np.float64).T
    _check_range(points, simplified=arity == 2)
    rows = np.empty((len(points), 3), dtype=np.float64)
    rows[0, :2] = points[0]
    np.subtract(points[1:], points[:-1], out=rows[1:, :2])
    rows[:, 2] = 0
    rows[np.cumsum(lengths) - 1, 2] = 1
    times = None
    if arity == 3:
        times = np.array(flat[2], dtype=np.float64)
        if not np.isfinite(times).all():
            raise Malformed("a time is not finite")
    return rows, times


def _arity(stroke: object) -> int:
    if not isinstance(stroke, list) or len(stroke) not in (2, 3) or not all(isinstance(v, list) for v in stroke):
        raise Malformed(f"a stroke must be [x, y] or [x, y, t] lists, got {_describe(stroke)}")
    return len(stroke)


def _describe(value: object) -> str:
    if isinstance(value, list):
        return f"{len(value)} items"
    return f"a {type(value).__name__}"


def _check_range(points: np.ndarray, simplified: bool) -> None:
    if not np.isfinite(points).all():
        raise Malformed("a coordinate is not finite")
    if simplified:
        if points.min() < 0 or points.max() > SIMPLIFIED_MAX or not (points == np.rint(points)).all():
            raise Malformed(f"simplified coordinates must be integers 0-{SIMPLIFIED_MAX}")
    elif np.abs(points).max() > MAX_COORDINATE:
        raise Malformed(f"coordinates exceed {MAX_COORDINATE:g}")


def read_meta(record: dict) -> dict:
    """The metadata fields of one record, ``key_id`` as a string (64-bit ids do not fit a double)."""
    key_id = record.get("key_id")
    if key_id is None or key_id == "":
        raise Malformed("missing key_id")
    if isinstance(key_id, float) and not math.isfinite(key_id):
        raise Malformed("key_id is not finite")
    meta = {name: record.get(name) for name in META_FIELDS}
    meta["key_id"] = str(key_id)
    return meta


def meta_fragment(meta: dict) -> bytes:
    """``"key_id":...,"word":...``: the fields as JSON object members, to splice into a sample's JSON."""
    return json.dumps(meta, separators=(",", ":")).encode()[1:-1]
