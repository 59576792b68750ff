"""QuickDraw drawings packed into the store as they are read, and read back by workers.

A split of a class gets the store's usual ``strokes``/``offsets``/``index`` arrays plus ``meta``
(each drawing's metadata as JSON object members, concatenated bytes) with ``meta_offsets``, and
``times`` (per stroke row, raw drawings only). Every array is appended to a ``.npy`` file on disk
as drawings arrive and its header is written last, so memory stays per drawing however large
the file; workers memory-map them and fetch any sample by position.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from .. import atomic
from ..store import StoreReader, array_path
from .drawing import Drawing, meta_fragment

# Room reserved for a .npy header that is written once the shape is known (numpy pads to 64).
HEADER_SIZE = 128
# Rows converted at a time when the float64 strokes turn out to fit int16 (6 MB read at a time).
COPY_ROWS = 1 << 18
# Stroke rows buffered before a block is written (about 1.5 MB of float64).
BLOCK_ROWS = 1 << 16
INT16_MAX = np.iinfo(np.int16).max


class NpyAppender:
    """A ``.npy`` file written by appending rows; it appears under its name only on :meth:`close`."""

    def __init__(self, path: Path, dtype: DTypeLike, width: int | None = None) -> None:
        self.path, self.dtype, self.width, self.rows = Path(path), np.dtype(dtype), width, 0
        self.temp = atomic.temp_path(self.path)
        self.file = open(self.temp, "wb", buffering=1 << 20)  # noqa: SIM115 (closed by close/discard)
        self.file.write(b"\0" * HEADER_SIZE)

    def append(self, array: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(array, dtype=self.dtype).tobytes())
        self.rows += len(array)

    def close(self) -> None:
        """Write the header, make the file durable, and move it to its final name."""
        shape = (self.rows,) if self.width is None else (self.rows, self.width)
        header = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape})
        header = header.ljust(HEADER_SIZE - 10 - 1) + "\n"
        self.file.seek(0)
        self.file.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temp, self.path)

    def discard(self) -> None:
        self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)


class SplitPacker:
    """Appends one split's drawings to the store; :meth:`close` publishes them, :meth:`discard` drops them.

    Drawings are buffered and written a block at a time: per-drawing numpy calls would cost more
    than parsing the drawing.
    """

    def __init__(self, store_dir: Path, split: str, class_index: int) -> None:
        os.makedirs(Path(store_dir) / split, exist_ok=True)
        path = lambda name: array_path(store_dir, split, class_index, name)  # noqa: E731
        self.strokes_path = path("strokes")
        self.files = {
            "strokes": NpyAppender(path("strokes.f8"), np.float64, 3),
            "offsets": NpyAppender(path("offsets"), np.int64),
            "index": NpyAppender(path("index"), np.int64),
            "meta": NpyAppender(path("meta"), np.uint8),
            "meta_offsets": NpyAppender(path("meta_offsets"), np.int64),
            "times": NpyAppender(path("times"), np.float64),
        }
        self.count = self.rows = self.meta_bytes = self.blank = 0
        self.largest = 0.0  # the largest |delta|, to know whether int16 holds the strokes exactly
        self.integral = self.timed = True
        self.pending: list[Drawing] = []
        self.pending_rows = 0
        for name in ("offsets", "meta_offsets"):
            self.files[name].append(np.zeros(1, np.int64))

    def add(self, drawing: Drawing) -> None:
        self.pending.append(drawing)
        self.count, self.pending_rows = self.count + 1, self.pending_rows + len(drawing.rows)
        if self.pending_rows >= BLOCK_ROWS:
            self._flush()

    def _flush(self) -> None:
        drawings, files = self.pending, self.files
        if not drawings:
            return
        rows = np.concatenate([d.rows for d in drawings])
        lengths = np.fromiter((len(d.rows) for d in drawings), np.int64, len(drawings))
        metas = [meta_fragment(d.meta) for d in drawings]
        starts = np.cumsum(lengths) - lengths
        files["strokes"].append(rows)
        files["offsets"].append(self.rows + np.cumsum(lengths))
        files["index"].append(np.fromiter((d.index for d in drawings), np.int64, len(drawings)))
        files["meta"].append(np.frombuffer(b"".join(metas), np.uint8))
        files["meta_offsets"].append(self.meta_bytes + np.cumsum([len(m) for m in metas]))
        self.timed = self.timed and all(d.times is not None for d in drawings)
        if self.timed:
            files["times"].append(np.concatenate([d.times for d in drawings]))
        self.largest = max(self.largest, float(np.abs(rows[:, :2]).max()))
        self.integral = self.integral and bool((rows == np.rint(rows)).all())
        # A drawing inks iff some row keeps the pen down (the store's blank count).
        self.blank += int(len(drawings) - np.count_nonzero(np.logical_or.reduceat(rows[:, 2] == 0, starts)))
        self.rows += len(rows)
        self.meta_bytes += sum(len(m) for m in metas)
        self.pending, self.pending_rows = [], 0

    def close(self) -> bool:
        """Publish the split's arrays; ``True`` if it holds times (every drawing was raw)."""
        self._flush()
        files = self.files
        for name in ("offsets", "index", "meta", "meta_offsets", "strokes"):
            files[name].close()
        timed = self.timed and self.count > 0
        files["times"].close() if timed else files["times"].discard()
        source = files["strokes"].path
        if self.integral and self.largest <= INT16_MAX:
            _narrow(source, self.strokes_path, np.int16)
            os.unlink(source)
        else:
            os.replace(source, self.strokes_path)
        return timed

    def discard(self) -> None:
        for appender in self.files.values():
            appender.discard()


def _narrow(source: Path, target: Path, dtype: DTypeLike) -> None:
    """Copy a float64 ``(n, 3)`` ``.npy`` to ``target`` as ``dtype``, a block of rows at a time.

    Plain reads, not a memory map: the pages of a mapped file count in this process's RSS.
    """
    out = NpyAppender(target, dtype, 3)
    try:
        with open(source, "rb") as rows:
            rows.seek(HEADER_SIZE)
            while block := rows.read(COPY_ROWS * 3 * 8):
                out.append(np.frombuffer(block, np.float64).reshape(-1, 3).astype(dtype))
    except BaseException:
        out.discard()
        raise
    out.close()


class ExtrasReader(StoreReader):
    """A worker's memory-mapped view of a split's per-drawing metadata and times."""

    def __init__(self, store_dir: Path, split: str) -> None:
        super().__init__(store_dir, split)
        self._extras: dict[tuple[int, str], np.ndarray | None] = {}

    def _open_extra(self, class_index: int, name: str) -> np.ndarray | None:
        key = (class_index, name)
        if key not in self._extras:
            path = array_path(self.store_dir, self.split, class_index, name)
            self._extras[key] = self._map(path) if path.exists() else None
        return self._extras[key]

    def meta(self, class_index: int, position: int) -> bytes:
        """The drawing's metadata as JSON object members, or ``b""`` for a class without any."""
        blob = self._open_extra(class_index, "meta")
        if blob is None:
            return b""
        offsets = self._open_extra(class_index, "meta_offsets")
        assert offsets is not None  # written with meta, always
        return blob[offsets[position] : offsets[position + 1]].tobytes()

    def times(self, class_index: int, position: int) -> np.ndarray | None:
        """The drawing's per-row times in ms, or ``None`` when its file has no timing."""
        times = self._open_extra(class_index, "times")
        if times is None:
            return None
        offsets = self._open(class_index)[1]
        return times[offsets[position] : offsets[position + 1]]
