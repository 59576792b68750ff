"""The store stage: every input's sketches packed once into flat, memory-mappable ``.npy`` files.

For each class and split the store holds ``strokes`` (all rows, concatenated, in the narrowest
exact dtype), ``offsets`` (``n + 1`` row offsets) and ``index`` (each kept sketch's index in the
source array). Workers open them with ``mmap_mode="r"``, so memory stays bounded whatever the
dataset's size and any sample can be fetched by position. A class is ingested once: its
``{class}.json`` is written last and marks it complete, so an interrupted ingest resumes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic, faults
from .errors import InputError, SketchError
from .read import ADAPTERS, SourceFile, stroke_dtype, validate_sketch
from .render import has_ink


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
    existing = load_record(task.store_dir, task.class_index)
    if existing is not None and existing.fingerprint == task.fingerprint:
        return existing
    path = task.source.path
    adapter = ADAPTERS.get(path.suffix)
    if adapter is None:
        raise InputError(f"no reader for {path.suffix} files", path)
    by_split = adapter(path, task.splits)
    record = ClassRecord(task.source.category, task.source.name, task.fingerprint)
    for split in task.splits:
        sketches = by_split.get(split)
        if sketches is None:
            continue
        if task.limit is not None:
            sketches = sketches[: task.limit]
        kept, kept_index, blank = [], [], 0
        for index, sketch in enumerate(sketches):
            reason = validate_sketch(sketch)
            if reason is not None:
                if task.on_error == "fail":
                    raise SketchError(reason, task.source.name, split, index)
                record.skipped.append({"source": task.source.name, "split": split, "index": index, "reason": reason})
                continue
            kept.append(sketch)
            kept_index.append(index)
            blank += not has_ink(sketch)
        _write_split(task, split, kept, kept_index)
        record.counts[split] = len(kept)
        record.blank[split] = blank
    if faults.ACTIVE:
        faults.point("ingest")  # arrays on disk, record not: the worst moment to die
    atomic.write_json(record_path(task.store_dir, task.class_index), record.__dict__)
    return record


def _write_split(task: IngestTask, split: str, sketches: list, source_index: list[int]) -> None:
    os.makedirs(Path(task.store_dir) / split, exist_ok=True)
    dtype = stroke_dtype(sketches)
    lengths = np.fromiter((len(s) for s in sketches), dtype=np.int64, count=len(sketches))
    offsets = np.zeros(len(sketches) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    strokes = np.empty((int(offsets[-1]), 3), dtype=dtype)
    for sketch, start, stop in zip(sketches, offsets[:-1], offsets[1:]):
        strokes[start:stop] = sketch
    path = lambda name: array_path(task.store_dir, split, task.class_index, name)  # noqa: E731
    atomic.write_npy(path("strokes"), strokes)
    atomic.write_npy(path("offsets"), offsets)
    atomic.write_npy(path("index"), np.asarray(source_index, dtype=np.int64))


class StoreReader:
    """Memory-mapped access to one split's packed sketches, opened lazily and kept per process."""

    def __init__(self, store_dir: Path, split: str) -> None:
        self.store_dir, self.split = Path(store_dir), split
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _open(self, class_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arrays = self._arrays.get(class_index)
        if arrays is None:
            arrays = tuple(
                np.load(array_path(self.store_dir, self.split, class_index, name), mmap_mode="r")
                for name in ("strokes", "offsets", "index")
            )
            self._arrays[class_index] = arrays  # type: ignore[assignment]
        return arrays  # type: ignore[return-value]

    def sketch(self, class_index: int, position: int) -> tuple[np.ndarray, int]:
        """The sketch at ``position`` among the class's kept sketches, and its source index."""
        strokes, offsets, index = self._open(class_index)
        return strokes[offsets[position] : offsets[position + 1]], int(index[position])
