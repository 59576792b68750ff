"""Ingest of one QuickDraw file: stream its drawings, filter and split them, pack them into the store."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import zlib
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic, faults
from ..errors import InputError, UsageError
from ..options import BuildOptions, DrawingOptions
from ..read import SourceFile
from ..store import ClassRecord, IngestTask, record_path
from . import is_drawing_file, ndjson, reader_for
from .drawing import Drawing, Skip
from .packing import SplitPacker
from .select import assign_split, rejection

_NO_TIMING = "--color time needs each point's time, which only raw QuickDraw ndjson and CSV files carry"
# A file whose first records are all malformed is not a QuickDraw file: stop before listing millions.
FIRST_RECORDS = 1000


@dataclass(frozen=True)
class DrawingIngestTask(IngestTask):
    """An :class:`IngestTask` for a QuickDraw file, with how its drawings are split and filtered."""

    drawings: DrawingOptions = DrawingOptions()
    seed: int = 0


@dataclass
class DrawingRecord(ClassRecord):
    """A :class:`ClassRecord` plus what the filters left out and whether the file has timing."""

    filtered: dict[str, int] = field(default_factory=dict)
    timed: bool = False


def drawing_task(task: IngestTask, options: DrawingOptions, seed: int) -> DrawingIngestTask:
    """``task`` for a QuickDraw file; its fingerprint also covers the split and filter options."""
    fingerprint = json.dumps([json.loads(task.fingerprint), options.to_dict(), seed])
    fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
    return DrawingIngestTask(**{**fields, "fingerprint": fingerprint}, drawings=options, seed=seed)


def check_sources(sources: Sequence[SourceFile], options: DrawingOptions, color: str) -> None:
    """Refuse, before reading anything, options that some input cannot honour."""
    for source in sources:
        if not is_drawing_file(source.path) and options.to_dict():
            raise UsageError(
                "--split-ratio, --recognized-only and --countries apply to QuickDraw files; "
                "a .npz has its own splits and no metadata",
                source.path,
            )
        # (a URL is not read twice for this: check_timed refuses it after ingest instead)
        if color == "time" and isinstance(source.path, Path) and not _first_drawing_timed(source.path):
            raise UsageError(_NO_TIMING, source.path)


def _first_drawing_timed(path: Path) -> bool:
    """Whether a file's first drawing is raw (has times): all a check before ingest can afford."""
    if not is_drawing_file(path):
        return False
    with contextlib.closing(read_records(path)) as records:
        first = next((item for item in records if isinstance(item, Drawing)), None)
    return first is not None and first.times is not None


def check_timed(kept: Sequence[tuple[SourceFile, ClassRecord]], color: str) -> None:
    """Refuse ``--color time`` once ingest shows a file with drawings that carry no times."""
    if color != "time":
        return
    for source, record in kept:
        if not (isinstance(record, DrawingRecord) and record.timed):
            raise UsageError(_NO_TIMING + "; some of its drawings have none", source.path)


def filtered_counts(records: Sequence[ClassRecord]) -> dict[str, int]:
    """Drawings left out by ``--recognized-only`` and ``--countries``, summed over files."""
    total = {"not_recognized": 0, "country": 0}
    for record in records:
        if isinstance(record, DrawingRecord):
            for reason, count in record.filtered.items():
                total[reason] += count
    return total


def load_drawing_record(task: DrawingIngestTask) -> DrawingRecord | None:
    """The store's record of this file if it was ingested with the same fingerprint."""
    try:
        record = DrawingRecord(**json.loads(record_path(task.store_dir, task.class_index).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return record if record.fingerprint == task.fingerprint else None


def ingest_drawings(task: DrawingIngestTask) -> DrawingRecord:
    """Read one QuickDraw file drawing by drawing into the store; reuse the store's copy if current."""
    existing = load_drawing_record(task)
    if existing is not None:
        return existing
    record = DrawingRecord(task.source.category, task.source.name, task.fingerprint)
    packers = {split: SplitPacker(task.store_dir, split, task.class_index) for split in wanted_splits(task)}
    try:
        pack_drawings(task, record, packers)
        timed = [packer.close() for packer in packers.values()]
    except BaseException:
        for packer in packers.values():
            packer.discard()
        raise
    record.counts = {split: packer.count for split, packer in packers.items()}
    record.blank = {split: packer.blank for split, packer in packers.items()}
    record.timed = all(timed)
    if faults.ACTIVE:
        faults.point("ingest")
    atomic.write_json(record_path(task.store_dir, task.class_index), record.__dict__)
    return record


def plan_drawings(
    source: SourceFile, wanted: tuple[str, ...], options: BuildOptions, sample: int
) -> tuple[DrawingRecord, list]:
    """For a dry run: a QuickDraw file's record and its first ``sample`` kept drawings, to size."""
    base = IngestTask(
        source=source,
        class_index=0,
        store_dir=Path(),
        splits=wanted,
        limit=options.limit,
        on_error=options.on_error,
        fingerprint="null",
    )
    task = drawing_task(base, options.drawings, options.seed)
    record = DrawingRecord(source.category, source.name, "")
    counters = {split: _Counter(split, sample) for split in wanted_splits(task)}
    pack_drawings(task, record, counters)
    record.counts = {split: counter.count for split, counter in counters.items()}
    return record, [item for counter in counters.values() for item in counter.kept]


class _Counter:
    """Stands in for a :class:`SplitPacker` in a dry run: counts drawings, keeps the first few."""

    def __init__(self, split: str, keep: int) -> None:
        self.split, self.keep, self.count = split, keep, 0
        self.kept: list[tuple] = []  # (split, index, rows, meta)

    def add(self, drawing: Drawing) -> None:
        self.count += 1
        if len(self.kept) < self.keep:
            self.kept.append((self.split, drawing.index, drawing.rows, drawing.meta))


def wanted_splits(task: DrawingIngestTask) -> list[str]:
    """The splits a QuickDraw file's drawings go to, of those the build makes."""
    return [split for split in task.drawings.splits if split in task.splits]


def pack_drawings(task: DrawingIngestTask, record: DrawingRecord, packers: dict) -> None:
    """Stream the file into ``packers`` (by split), noting skips and filters in ``record``.

    Raises ``InputError`` for a file that holds no valid drawing at all.
    """
    with task.source.folder.local_copy(task.source.name) as path:  # a URL is streamed to a temp file
        scan = pack_records(task, read_records(path), path, record, packers)
        if not scan.found:
            raise InputError("holds no valid drawing" + first_reason(record), path)


@dataclass
class Scan:
    """How a file's records (or a byte range's) went: valid drawings found, kept or filtered out,
    and how many malformed records came before the first of them."""

    found: int = 0
    leading: int = 0


def pack_records(
    task: DrawingIngestTask,
    items: Iterable[Drawing | Skip],
    path: Path,
    record: DrawingRecord,
    packers: dict,
    at_file_start: bool = True,
) -> Scan:
    """Pack ``items`` (``path``'s records, or some of them) into ``packers`` by split; note skips
    and filters in ``record``. ``at_file_start``: the items are the file's first, so a file whose
    first ``FIRST_RECORDS`` records are all malformed is refused."""
    options, limit = task.drawings, task.limit
    record.filtered = {"not_recognized": 0, "country": 0} if options.filters else {}
    scan = Scan()
    for item in items:
        if isinstance(item, Skip):
            if task.on_error == "fail":
                raise InputError(f"{item.where} {item.at}: {item.reason}", path)
            record.skipped.append({"source": task.source.name, item.where: item.at, "reason": item.reason})
            if not scan.found:
                scan.leading += 1
                if at_file_start and scan.leading == FIRST_RECORDS:
                    raise InputError(
                        f"the first {FIRST_RECORDS} records are all malformed" + first_reason(record), path
                    )
            continue
        scan.found += 1
        reason = rejection(item.meta, options)
        if reason is not None:
            record.filtered[reason] += 1
            continue
        packer = packers.get(assign_split(item.meta["key_id"], task.seed, options.split_ratio))
        if packer is None or (limit is not None and packer.count >= limit):
            if limit is not None and all(p.count >= limit for p in packers.values()):
                break  # every split is full: the rest of the file cannot add a drawing
            continue
        packer.add(item)
    return scan


def read_records(path: Path, lines: ndjson.LineRange | None = None) -> Generator[Drawing | Skip, None, None]:
    """The file's records (with ``lines``, those of a plain ndjson file's byte range); a failure to
    read it (corrupt or cut-short gzip, I/O) is an ``InputError``."""
    records = reader_for(path)(path) if lines is None else ndjson.read(path, lines)
    while True:
        try:
            item = next(records)
        except StopIteration:
            return
        except (OSError, EOFError, ValueError, zlib.error) as error:
            raise InputError(f"cannot be read: {error}", path) from None
        yield item


def first_reason(record: DrawingRecord) -> str:
    if not record.skipped:
        return ""
    first = record.skipped[0]
    where = "line" if "line" in first else "offset"
    return f" ({len(record.skipped)} skipped; {where} {first[where]}: {first['reason']})"
