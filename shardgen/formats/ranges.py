"""A large plain ndjson file ingested by several workers at once, a byte range each.

A QuickDraw ndjson file is one drawing a line, and a drawing's split hangs on its ``key_id``, not
on its position (see ``select``): any byte range's lines can be parsed, filtered and split on
their own. Parsing costs ~45 us a drawing, a fifth of rendering it, so one worker reading a 1 GB
file while the others wait would hold a large build up. :func:`ingest_range` packs one range's
lines into a folder of their own (``store/ranges/CLASS/PART/``), as a whole-file ingest packs a
file; :func:`join_ranges` then joins the parts in file order into the class's usual store arrays
and writes its record. The store, and so every shard, is the same as a one-pass ingest gives.

Not split: gzip files (a stream cannot be entered half-way), ``.bin`` (records of varying length,
no line ends), CSV (a quoted field may span lines), remote files (each task would download the
file) and builds with ``--limit`` (which reads a file's first drawings only).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import atomic, faults
from ..errors import InputError
from ..npz import read_npy_header
from ..read import input_suffix
from ..store import RANGES_DIR, array_path, record_path
from .drawing import Drawing, Skip
from .ingest import (
    FIRST_RECORDS,
    DrawingIngestTask,
    DrawingRecord,
    first_reason,
    pack_records,
    read_records,
    wanted_splits,
)
from .ndjson import LineRange, lines_before
from .packing import COPY_ROWS, NpyAppender, SplitPacker

MIN_RANGE_BYTES = 16 << 20  # ~40,000 simplified drawings, ~1.5 s of one worker's parsing


def byte_ranges(size: int, share: float, workers: int) -> list[tuple[int, int | None]]:
    """The byte ranges a file of ``size`` bytes is read in: about ``share`` (its part of all the
    input's bytes) of ``workers``, each at least ``MIN_RANGE_BYTES``; one range for small files.

    The last range runs to the end of the file (``None``), wherever that is when it is read, as a
    single pass reads it: a file that grows during the build loses no line to a stale size.
    """
    count = max(1, min(math.ceil(share * workers), size // MIN_RANGE_BYTES))
    starts = [size * part // count for part in range(count)]
    stops: list[int | None] = [*starts[1:], None]
    return list(zip(starts, stops))


def splits_by_range(task: DrawingIngestTask) -> bool:
    """Whether the file of ``task`` may be read in byte ranges (see the module docstring)."""
    source = task.source
    return isinstance(source.path, Path) and input_suffix(source.path) == ".ndjson" and task.limit is None


@dataclass(frozen=True)
class RangeTask:
    """Ingest the lines of ``task``'s file that begin in bytes ``[start, stop)`` (``None``: to its
    end), the ``part``-th range."""

    task: DrawingIngestTask
    part: int
    start: int
    stop: int | None


@dataclass
class SplitPart:
    """One split of one range, as its packer left it."""

    count: int
    blank: int
    timed: bool  # every drawing of it had times (true for none)


@dataclass
class RangeRecord:
    """What one range held: its splits, skips (lines numbered from the range's first), filters, and
    what the join needs to number lines and check the file's start."""

    splits: dict[str, SplitPart] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)
    lines: int = 0
    found: int = 0
    leading: int = 0  # malformed records before its first valid one (all of them if it has none)


def class_folder(task: DrawingIngestTask) -> Path:
    """Where the ranges of ``task``'s file are packed: ``store/ranges/CLASS/``."""
    return Path(task.store_dir) / RANGES_DIR / f"{task.class_index:05d}"


def part_folder(task: DrawingIngestTask, part: int) -> Path:
    """Where range ``part`` of ``task``'s file is packed."""
    return class_folder(task) / f"{part:04d}"


def ingest_range(job: RangeTask) -> RangeRecord:
    """Pack one range's drawings into its part folder (see the module docstring)."""
    task, folder = job.task, part_folder(job.task, job.part)
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted run left
    packers = {split: SplitPacker(folder, split, task.class_index) for split in wanted_splits(task)}
    record = DrawingRecord(task.source.category, task.source.name, task.fingerprint)
    lines = LineRange(job.start, job.stop)
    path = Path(task.source.path)
    items: Iterable[Drawing | Skip] = read_records(path, lines)
    if task.on_error == "fail" and job.part > 0:
        items = _numbered_in_file(items, path, lines)
    try:
        scan = pack_records(task, items, path, record, packers, at_file_start=job.part == 0)
        for packer in packers.values():
            packer.close()
    except BaseException:
        for packer in packers.values():
            packer.discard()
        raise
    parts = {split: SplitPart(p.count, p.blank, p.timed) for split, p in packers.items()}
    return RangeRecord(parts, record.skipped, record.filtered, lines.count, scan.found, scan.leading)


def _numbered_in_file(items: Iterable[Drawing | Skip], path: Path, lines: LineRange) -> Iterator[Drawing | Skip]:
    """``items`` with a skip numbered by its line in the file, for ``--on-error fail``'s message
    (the first skip ends the ingest, so the lines before the range are counted once at most)."""
    for item in items:
        if isinstance(item, Skip):
            item = dataclasses.replace(item, at=item.at + lines_before(path, lines.first))
        yield item


def join_ranges(task: DrawingIngestTask, parts: Sequence[RangeRecord]) -> DrawingRecord:
    """Join the ranges' parts, in file order, into the class's store arrays; write its record last.

    The parts are removed whatever happens: joined, or refused (a rerun reads the file again).
    """
    try:
        return _join(task, parts)
    finally:
        shutil.rmtree(class_folder(task), ignore_errors=True)


def _join(task: DrawingIngestTask, parts: Sequence[RangeRecord]) -> DrawingRecord:
    path = Path(task.source.path)
    bases = [0, *np.cumsum([part.lines for part in parts]).tolist()]
    record = DrawingRecord(task.source.category, task.source.name, task.fingerprint)
    record.skipped = [
        {**skip, "line": skip["line"] + base} for part, base in zip(parts, bases) for skip in part.skipped
    ]
    _check_start(parts, record, path)
    if not any(part.found for part in parts):
        raise InputError("holds no valid drawing" + first_reason(record), path)
    record.filtered = {reason: sum(part.filtered[reason] for part in parts) for reason in parts[0].filtered}
    timed = []
    for split in parts[0].splits:
        pieces = [part.splits[split] for part in parts]
        record.counts[split] = sum(piece.count for piece in pieces)
        record.blank[split] = sum(piece.blank for piece in pieces)
        timed.append(record.counts[split] > 0 and all(piece.timed for piece in pieces))
        _join_split(task, split, [part_folder(task, n) for n in range(len(parts))], bases, timed[-1])
    record.timed = all(timed)
    if faults.ACTIVE:
        faults.point("ingest")
    atomic.write_json(record_path(task.store_dir, task.class_index), record.__dict__)
    return record


def _check_start(parts: Sequence[RangeRecord], record: DrawingRecord, path: Path) -> None:
    """Refuse the file as a one-pass ingest would if its first ``FIRST_RECORDS`` records, across
    ranges, are all malformed (the first range checks its own)."""
    leading = 0
    for part in parts:
        leading += part.leading
        if leading >= FIRST_RECORDS:
            first = dataclasses.replace(record, skipped=record.skipped[:FIRST_RECORDS])
            raise InputError(f"the first {FIRST_RECORDS} records are all malformed" + first_reason(first), path)
        if part.found:
            return


def _join_split(task: DrawingIngestTask, split: str, folders: list[Path], line_bases: list[int], timed: bool) -> None:
    """Concatenate one split's arrays from every part folder into the store, rebasing the offsets."""
    files = lambda name: [array_path(folder, split, task.class_index, name) for folder in folders]  # noqa: E731
    target = lambda name: array_path(task.store_dir, split, task.class_index, name)  # noqa: E731
    os.makedirs(Path(task.store_dir) / split, exist_ok=True)
    strokes, meta = files("strokes"), files("meta")
    stroke_headers = [_header(path) for path in strokes]
    narrow = all(dtype == np.int16 for _, dtype in stroke_headers)  # else one is float64: widen the rest exactly
    _concatenate(NpyAppender(target("strokes"), np.int16 if narrow else np.float64, 3), strokes)
    row_starts = _starts([shape[0] for shape, _ in stroke_headers])
    _concatenate(NpyAppender(target("offsets"), np.int64), files("offsets"), row_starts, first=True)
    _concatenate(NpyAppender(target("index"), np.int64), files("index"), line_bases)
    _concatenate(NpyAppender(target("meta"), np.uint8), meta)
    meta_starts = _starts([_header(path)[0][0] for path in meta])
    _concatenate(NpyAppender(target("meta_offsets"), np.int64), files("meta_offsets"), meta_starts, first=True)
    if timed:
        _concatenate(NpyAppender(target("times"), np.float64), [p for p in files("times") if p.exists()])


def _starts(lengths: list[int]) -> list[int]:
    """Where each part's rows start in the joined array."""
    return [0, *np.cumsum(lengths).tolist()]


def _concatenate(out: NpyAppender, paths: list[Path], shifts: Sequence[int] | None = None, first: bool = False) -> None:
    """Append each ``.npy`` of ``paths`` to ``out``, plus ``shifts[i]`` for the i-th; with ``first``,
    every part's leading element but the first part's is dropped (offset arrays start with 0)."""
    try:
        for number, path in enumerate(paths):
            for block_number, block in enumerate(_blocks(path)):
                if first and number > 0 and block_number == 0:
                    block = block[1:]
                out.append(block + shifts[number] if shifts is not None else block)
    except BaseException:
        out.discard()
        raise
    out.close()


def _blocks(path: Path) -> Iterator[np.ndarray]:
    """A ``.npy`` file's rows, ``COPY_ROWS`` at a time, read rather than mapped (see ``packing._narrow``)."""
    with open(path, "rb") as stream:
        shape, _, dtype = read_npy_header(stream)
        row = math.prod(shape[1:]) * dtype.itemsize
        while block := stream.read(COPY_ROWS * row):
            yield np.frombuffer(block, dtype).reshape(-1, *shape[1:])


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` file's header gives."""
    with open(path, "rb") as stream:
        shape, _, dtype = read_npy_header(stream)
    return tuple(shape), dtype
