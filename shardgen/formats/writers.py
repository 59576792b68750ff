"""Drawings written in each QuickDraw format, as Google and Kaggle ship them (for ``shardgen sample``).

A drawing here is a list of strokes, each an ``(n, 2)`` array of absolute positions, with per-row
times for raw output; metadata is ``key_id`` (int), ``countrycode``, ``recognized``, ``timestamp``
(unix seconds) and ``word``. Files are written through a temp name and renamed when complete.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .. import atomic
from .binary import COUNT, HEADER

SampleDrawing = tuple[list[np.ndarray], list[np.ndarray] | None, dict]  # strokes, times per stroke, meta
CSV_COLUMNS = ("countrycode", "drawing", "key_id", "recognized", "timestamp", "word")


def _when(seconds: int, microseconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(microsecond=microseconds)


def _drawing_lists(strokes: list[np.ndarray], times: list[np.ndarray] | None) -> list:
    """``[[x...], [y...]]`` per stroke (ints when the positions are), plus ``[t...]`` when timed."""
    out = []
    for number, stroke in enumerate(strokes):
        columns = [stroke[:, 0].tolist(), stroke[:, 1].tolist()]
        if times is not None:
            columns.append(times[number].tolist())
        out.append(columns)
    return out


def ndjson_line(strokes, times, meta: dict) -> str:
    """One line of Google's ndjson, fields in the order Google writes them."""
    record = {
        "word": meta["word"],
        "countrycode": meta["countrycode"],
        "timestamp": _when(meta["timestamp"], meta["microseconds"]).strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
        "recognized": meta["recognized"],
        "key_id": str(meta["key_id"]),
        "drawing": _drawing_lists(strokes, times),
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


def write_ndjson(path: Path, drawings: Iterable[SampleDrawing]) -> None:
    """Simplified or raw ndjson (raw when the drawings carry times); gzipped if ``path`` ends in ``.gz``."""
    text = "".join(ndjson_line(*drawing) for drawing in drawings).encode()
    atomic.write_bytes(path, gzip.compress(text, mtime=0) if path.name.endswith(".gz") else text)


def write_csv(path: Path, drawings: Iterable[SampleDrawing]) -> None:
    """A Kaggle ``train_simplified``/``train_raw`` CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for strokes, times, meta in drawings:
        when = _when(meta["timestamp"], meta["microseconds"]).strftime("%Y-%m-%d %H:%M:%S.%f")
        drawing = json.dumps(_drawing_lists(strokes, times))
        writer.writerow([meta["countrycode"], drawing, meta["key_id"], meta["recognized"], when, meta["word"]])
    atomic.write_bytes(path, buffer.getvalue().encode())


def write_bin(path: Path, drawings: Iterable[SampleDrawing]) -> None:
    """Google's binary format (positions must be integers 0-255)."""
    parts = []
    for strokes, _, meta in drawings:
        country = meta["countrycode"].encode("ascii")
        parts.append(HEADER.pack(meta["key_id"], country, meta["recognized"], meta["timestamp"], len(strokes)))
        for stroke in strokes:
            parts.append(COUNT.pack(len(stroke)))
            parts.append(stroke[:, 0].astype(np.uint8).tobytes() + stroke[:, 1].astype(np.uint8).tobytes())
    atomic.write_bytes(path, b"".join(parts))
