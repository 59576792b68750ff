"""The store stage: every input's sketches packed once into flat, memory-mappable ``.npy`` files.

For each class and split the store holds ``strokes`` (all rows, concatenated, in the narrowest
exact dtype), ``offsets`` (``n + 1`` row offsets) and ``index`` (each kept sketch's index in the
source array). Workers open them with ``mmap_mode="r"``, so memory stays bounded whatever the
dataset's size and any sample can be fetched by position. A class is ingested once: its
``{class}.json`` is written last and marks it complete, so an interrupted ingest resumes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic, faults
from .errors import InputError
from .npz import read_npy_header
from .read import ADAPTERS, MAX_COORDINATE, SourceFile, split_sketches, stroke_dtype, valid_sketches

# The arrays the store holds for each class and split (see the module docstring).
ARRAYS = ("strokes", "offsets", "index")
# In the store folder: the byte ranges of large files, packed apart until joined (``formats.ranges``).
RANGES_DIR = "ranges"


@dataclass(frozen=True)
class IngestTask:
    """Pack one source file (one class) into the store; picklable, runs in a worker."""

    source: SourceFile
    class_index: int
    store_dir: Path
    splits: tuple[str, ...]
    limit: int | None
    on_error: str  # "fail": raise on the first invalid sketch; "skip": list it and go on
    fingerprint: str  # identifies the source file and ingest options; a mismatch re-ingests


@dataclass
class ClassRecord:
    """What the store knows about one class: counts per split, blanks, skipped sketches."""

    category: str
    source: str
    fingerprint: str
    counts: dict[str, int] = field(default_factory=dict)
    blank: dict[str, int] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)


def record_path(store_dir: Path, class_index: int) -> Path:
    return Path(store_dir) / f"{class_index:05d}.json"


def array_path(store_dir: Path, split: str, class_index: int, name: str) -> Path:
    return Path(store_dir) / split / f"{class_index:05d}.{name}.npy"


def load_record(store_dir: Path, class_index: int) -> ClassRecord | None:
    """The record of an ingested class, or ``None`` if it was never (completely) ingested."""
    try:
        return ClassRecord(**json.loads(record_path(store_dir, class_index).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def ingest(task: IngestTask) -> ClassRecord:
    """Read, validate and pack one source file; reuse the store's copy when it is up to date."""
    try:
        return _ingest(task)
    finally:
        _release_heap()


def _release_heap() -> None:
    """Hand the memory a file's sketches used back to the OS (glibc only; a no-op elsewhere).

    A file holds ~10^5 small arrays; once freed, glibc keeps their heap in the worker, which would
    then render the whole build with that much more RSS (measured: +200 MB over 1M sketches).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _ingest(task: IngestTask) -> ClassRecord:
    existing = load_record(task.store_dir, task.class_index)
    if existing is not None and existing.fingerprint == task.fingerprint and _store_intact(task, existing):
        return existing
    suffix = Path(task.source.name).suffix
    adapter = ADAPTERS.get(suffix)
    if adapter is None:
        raise InputError(f"no reader for {suffix} files", task.source.path)
    with task.source.folder.local_copy(task.source.name) as path:  # a URL is streamed to a temp file
        by_split = adapter(path, task.splits)
    record = ClassRecord(task.source.category, task.source.name, task.fingerprint)
    for split, sketches in split_sketches(by_split, task.splits, task.limit):
        rows = _screen(sketches)
        if rows is not None:  # all valid: no per-sketch checks needed
            lengths = np.fromiter((len(s) for s in sketches), dtype=np.int64, count=len(sketches))
            source_index = np.arange(len(sketches), dtype=np.int64)
        else:
            kept: list[np.ndarray] = []
            kept_index: list[int] = []
            for index, sketch in valid_sketches(sketches, task.source.name, split, task.on_error, record.skipped):
                kept.append(sketch)
                kept_index.append(index)
            rows = np.concatenate(kept) if kept else np.empty((0, 3), dtype=np.int16)
            rows = rows.astype(stroke_dtype(kept), copy=False)
            lengths = np.fromiter((len(s) for s in kept), dtype=np.int64, count=len(kept))
            source_index = np.asarray(kept_index, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        _write_split(task, split, rows, offsets, source_index)
        record.counts[split] = len(lengths)
        record.blank[split] = _count_blank(rows, offsets)
    if faults.ACTIVE:
        faults.point("ingest")  # arrays on disk, record not: the worst moment to die
    atomic.write_json(record_path(task.store_dir, task.class_index), record.__dict__)
    return record


def _store_intact(task: IngestTask, record: ClassRecord) -> bool:
    """Whether the class's packed arrays are all there and as long as their headers say.

    A store file cut short (a full disk, a copy interrupted, a user) is re-packed, not rendered from.
    """
    for split, count in record.counts.items():
        shape = {name: _npy_shape(array_path(task.store_dir, split, task.class_index, name)) for name in ARRAYS}
        if shape["offsets"] != (count + 1,) or shape["index"] != (count,) or shape["strokes"] is None:
            return False
    return True


def _npy_shape(path: Path) -> tuple[int, ...] | None:
    """The shape in the header of a ``.npy`` store file, or ``None`` if the file is missing or short."""
    try:
        with open(path, "rb") as f:
            shape, _, dtype = read_npy_header(f)
            complete = os.fstat(f.fileno()).st_size == f.tell() + int(np.prod(shape)) * dtype.itemsize
    except (OSError, ValueError, InputError):
        return None
    return tuple(shape) if complete else None


def _screen(sketches) -> np.ndarray | None:
    """All rows of ``sketches`` concatenated, if every sketch is provably valid; else ``None``.

    Checking sketches one by one costs tens of microseconds each in numpy call overhead, a large
    share of a small image's budget. Non-empty integer ``(n, 3)`` arrays are valid unless a
    position can exceed the bound, and ``|position| <= n * max|delta|`` checks that for all at once.
    """
    longest = 0
    for s in sketches:
        if not (isinstance(s, np.ndarray) and s.ndim == 2 and s.shape[1] == 3 and s.dtype.kind in "iu"):
            return None
        if len(s) == 0:
            return None
        longest = max(longest, len(s))
    if not len(sketches):
        return None
    rows = np.concatenate(sketches).astype(stroke_dtype(list(sketches)), copy=False)
    deltas = rows[:, :2]
    largest = max(-int(deltas.min()), int(deltas.max()))
    return rows if largest * longest <= MAX_COORDINATE else None


def _count_blank(rows: np.ndarray, offsets: np.ndarray) -> int:
    """Sketches that ink nothing: a sketch inks iff some row keeps the pen down (see ``has_ink``)."""
    if len(offsets) < 2:
        return 0
    down = rows[:, 2] == 0
    return int(len(offsets) - 1 - np.count_nonzero(np.logical_or.reduceat(down, offsets[:-1])))


def _write_split(
    task: IngestTask, split: str, strokes: np.ndarray, offsets: np.ndarray, source_index: np.ndarray
) -> None:
    os.makedirs(Path(task.store_dir) / split, exist_ok=True)
    path = lambda name: array_path(task.store_dir, split, task.class_index, name)  # noqa: E731
    atomic.write_npy(path("strokes"), strokes)
    atomic.write_npy(path("offsets"), offsets)
    atomic.write_npy(path("index"), source_index)


class StoreReader:
    """Memory-mapped access to one split's packed sketches, opened lazily and kept per process.

    Pages a worker touched stay in its RSS until unmapped, so over a large store every worker's RSS
    would grow towards the store's size. :meth:`release` (called after each chunk) drops them from
    the process (they stay in the OS page cache), keeping memory flat whatever the dataset's size.
    """

    def __init__(self, store_dir: Path, split: str) -> None:
        self.store_dir, self.split = Path(store_dir), split
        self._arrays: dict[int, tuple[np.ndarray, ...]] = {}
        self._maps: list[mmap.mmap] = []

    def _map(self, path: Path) -> np.ndarray:
        # np.load(mmap_mode="r") hands out np.memmap, whose slices cost microseconds each and whose
        # mapping cannot be released; a plain ndarray over our own mmap has neither problem.
        with open(path, "rb") as f:
            shape, fortran, dtype = read_npy_header(f)
            offset = f.tell()
            count = int(np.prod(shape))
            if count == 0:
                return np.empty(shape, dtype=dtype)
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._maps.append(mapped)
        array = np.frombuffer(mapped, dtype=dtype, count=count, offset=offset)
        return array.reshape(shape, order="F" if fortran else "C")

    def _open(self, class_index: int) -> tuple[np.ndarray, ...]:
        """The class's arrays, mapped on first use, in the order of ``ARRAYS``."""
        arrays = self._arrays.get(class_index)
        if arrays is None:
            arrays = tuple(self._map(array_path(self.store_dir, self.split, class_index, name)) for name in ARRAYS)
            self._arrays[class_index] = arrays
        return arrays

    def sketch(self, class_index: int, position: int) -> tuple[np.ndarray, int]:
        """The sketch at ``position`` among the class's kept sketches, and its source index."""
        strokes, offsets, index = self._open(class_index)
        return strokes[offsets[position] : offsets[position + 1]], int(index[position])

    def release(self) -> None:
        """Drop the mapped pages from this process's RSS; the mappings stay valid."""
        for mapped in self._maps:
            mapped.madvise(mmap.MADV_DONTNEED)
