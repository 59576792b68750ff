"""The orchestrator: read -> store -> plan -> render (workers) -> write -> index.

An asyncio event loop submits small task descriptions to any ``concurrent.futures.Executor``
(a process pool here, a Dask cluster's executor elsewhere) with ``executor.submit_task`` (that is
``loop.run_in_executor`` without a cancellation race) and keeps a bounded number in flight through
an ``asyncio.Queue`` of futures. Workers write what they render (``fragments``); the writer
coroutine here follows each shard's chunks in plan order, has the shard sealed on a worker when
its last chunk is in, and journals it. The parent never touches an image byte.

:class:`Build` is one run of that on one executor; ``pipeline.build`` chooses the executor, retries
in a fresh pool and handles signals and cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic, dali, manifest
from .errors import InputError, UsageError, WorkerError, with_skip_hint
from .executor import drop, submit_task
from .formats import is_drawing_file
from .formats.ingest import (
    DrawingIngestTask,
    check_timed,
    drawing_task,
    filtered_counts,
    ingest_drawings,
    load_drawing_record,
)
from .formats.ranges import RangeTask, byte_ranges, class_folder, ingest_range, join_ranges, splits_by_range
from .fragments import PARTS_DIR
from .identity import fingerprint
from .layout import Layout
from .location import Location, is_storage_error, storage_error
from .objectstore import RecordJournal, reusable
from .options import BuildOptions, RenderOptions
from .output import JOURNAL_FILE, STATE_DIR, record_outputs
from .plan import Shard, plan_path, split_order, split_shards
from .progress import BuildResult, Reporter, skipped_file, skipped_sketches
from .read import SPLITS, SourceFile
from .store import RANGES_DIR, ClassRecord, IngestTask, ingest
from .write import Journal, ShardRecord, file_digest, output_error
from .writer import ShardWriter

CHUNK_BYTES = 32 << 20  # the most output one chunk task writes (see chunk_samples)
CHUNK_SAMPLES = (256, 4096)  # the default chunk size's range
CHUNKS_PER_WORKER = 8
WHOLE_SHARD_BYTES = 256 << 20  # the most output a task that renders a whole shard writes (see whole_shards)
TAIL_ROUNDS = 2  # the last shards, TAIL_ROUNDS per worker, keep their chunks (see whole_shards)


@dataclass
class Tally:
    """What one call of ``pipeline.build`` rendered, across a retry in a fresh pool."""

    images: int = 0
    sealed: set[str] = field(default_factory=set)


@dataclass
class Inputs:
    """What the ingest stage found: the inputs kept (with their store records), those skipped, the layout."""

    kept: list[tuple[SourceFile, ClassRecord]]
    skipped_files: list[dict]
    layout: Layout


@dataclass(eq=False)
class Build:
    """One run of a build on one executor, stage by stage: :meth:`ingest`, :meth:`plan`,
    :meth:`render`, :meth:`index` (:meth:`run` runs them in turn).

    DST and its state folder are prepared and locked by the caller; ``inflight`` chunks at most are
    out at once; ``tally`` outlives this run (a retry in a fresh pool is another ``Build``).
    """

    output: Location
    state: Path
    options: BuildOptions
    executor: Executor
    reporter: Reporter
    inflight: int
    chunk_size: int | None
    tally: Tally
    journal: Journal | RecordJournal = field(init=False)
    plans_written: dict[str, asyncio.Future] = field(init=False, default_factory=dict)  # see plan

    def __post_init__(self) -> None:
        local = self.output.is_local
        self.journal = Journal(self.state / JOURNAL_FILE) if local else RecordJournal(self.output.child(STATE_DIR))

    async def run(self, sources: list[SourceFile]) -> BuildResult:
        """Every stage in turn: what the build produced."""
        inputs = await self.ingest(sources)
        shards = self.plan(inputs.layout)
        try:
            done = await self.render(shards, inputs.layout.build_id)
        finally:  # no plan thread outlives the build (a failed one was raised by its split's writer)
            await asyncio.gather(*self.plans_written.values(), return_exceptions=True)
        return self.index(inputs, shards, done)

    def submit(self, fn: Callable, *args: Any) -> asyncio.Future:
        """Run ``fn(*args)`` on the executor (see ``executor.submit_task``)."""
        return submit_task(asyncio.get_running_loop(), self.executor, fn, *args)

    async def ingest(self, sources: list[SourceFile]) -> Inputs:
        """Pack every source into the store, in parallel (bad files fail or are skipped per on_error);
        check what the kept ones hold, and lay their classes out for the build."""
        self.reporter.stage("ingest", len(sources))
        fingerprints = fingerprint(sources)
        sizes = [identity.get("size", 0) for identity in fingerprints]
        total = sum(sizes) or 1
        # Submitted largest first: with more files than workers, the last file to start is then a
        # small one, and ingest ends nearly together on every worker. Simulated for 345 files of
        # log-normal sizes on 128 workers: 1.25-1.45 x the ideal time in name order, 1.00-1.07 x
        # largest first. Class indexes, and so the output, stay in name order.
        order = sorted(range(len(sources)), key=lambda i: -sizes[i])
        results = await _gather_or_cancel(
            [self._ingest_one(i, sources[i], fingerprints[i], sizes[i] / total) for i in order]
        )
        by_position = dict(zip(order, results))
        outcomes = [by_position[position] for position in range(len(sources))]
        with contextlib.suppress(OSError):  # every file read in ranges is joined or dropped by now
            os.rmdir(self.state / "store" / RANGES_DIR)
        kept = [(source, outcome) for source, outcome in zip(sources, outcomes) if isinstance(outcome, ClassRecord)]
        for _, record in kept:
            skipped_sketches(self.reporter, record)
        check_timed(kept, self.options.render.color)
        splits = splits_present(kept, self.options)
        layout = Layout(
            classes=[record.category for _, record in kept],
            sources=[source.name for source, _ in kept],
            store_ids=[sources.index(source) for source, _ in kept],
            counts={split: [record.counts.get(split, 0) for _, record in kept] for split in splits},
        )
        return Inputs(kept, [outcome for outcome in outcomes if isinstance(outcome, dict)], layout)

    async def _ingest_one(self, position: int, source: SourceFile, identity: dict, share: float) -> ClassRecord | dict:
        """The store record of one source, which holds ``share`` of the input's bytes; with on_error
        "skip", an unreadable one's ``skipped_files`` entry."""
        options = self.options
        splits = tuple(options.splits or SPLITS)
        task = IngestTask(
            source=source,
            class_index=position,
            store_dir=self.state / "store",
            splits=splits,
            limit=options.limit,
            on_error=options.on_error,
            fingerprint=json.dumps([identity, splits, options.limit, options.on_error]),
        )
        try:
            return await self._read(task, identity, share)
        except InputError as error:
            if options.on_error != "skip":
                raise with_skip_hint(error) from None
            return skipped_file(self.reporter, source, error)
        except BrokenProcessPool:
            raise WorkerError(
                "a worker process died while reading it (killed by the system, out of memory?)", source.path
            ) from None
        except OSError as error:  # reading errors are InputErrors; this is the store failing to write
            raise output_error(error, Path(error.filename or self.state / "store")) from None
        finally:
            self.reporter.advance(1)

    async def _read(self, task: IngestTask, identity: dict, share: float) -> ClassRecord:
        """Have the workers pack one source into the store: a large QuickDraw ndjson file by byte
        ranges, on as many workers as its ``share`` of the input's bytes earns it."""
        if not is_drawing_file(task.source.path):
            return await self.submit(ingest, task)
        drawings = drawing_task(task, self.options.drawings, self.options.seed)
        ranges = byte_ranges(identity["size"], share, self.inflight // 2) if splits_by_range(drawings) else []
        if len(ranges) < 2:
            return await self.submit(ingest_drawings, drawings)
        return await self._ingest_ranges(drawings, ranges)

    async def _ingest_ranges(self, task: DrawingIngestTask, ranges: list[tuple[int, int | None]]) -> ClassRecord:
        """Ingest one large file a byte range per task, then join the ranges (see ``formats.ranges``)."""
        existing = load_drawing_record(task)  # ingested before with these options: nothing to read
        if existing is not None:
            return existing
        futures = [self.submit(ingest_range, RangeTask(task, part, *bounds)) for part, bounds in enumerate(ranges)]
        try:
            # In file order, so that a failure is the one a single pass would have met first.
            parts = [await future for future in futures]
        except BaseException as error:
            try:
                if isinstance(error, InputError) and self.options.on_error == "skip":
                    # The build goes on without this file: let its other ranges end (they hold
                    # their workers either way), then drop what they packed.
                    await asyncio.gather(*futures, return_exceptions=True)
                    shutil.rmtree(class_folder(task), ignore_errors=True)
            finally:
                for future in futures:
                    drop(future)
            raise
        return await self.submit(join_ranges, task, parts)

    def plan(self, layout: Layout) -> dict[str, tuple[Shard, ...]]:
        """Cut every split into shards, record the layout and the names of what DST will hold, and
        start writing each split's plan (the order of its samples) in a thread of its own.

        A split's first task is submitted once its plan is written, the smallest split first (see
        ``render_order``), so it renders while the largest is shuffled (QuickDraw's train: ~1 s).
        """
        options = self.options
        shards = {
            split: split_shards(
                split,
                sum(counts),
                options.shard_size,
                chunk_samples(self.chunk_size, options.render, sum(counts), self.inflight // 2),
            )
            for split, counts in layout.counts.items()
        }
        try:
            layout.save(self.state)
            names = [shard.name for in_split in shards.values() for shard in in_split]
            indexes = [dali.index_name(name) for name in names] if options.dali_index else []
            wids = [f"{split}.wids.json" for split in shards]
            record_outputs(self.output, [*names, *indexes, *wids, manifest.MANIFEST])  # see output.clean_output
        except OSError as error:
            raise output_error(error, self.state) from None
        for split in render_order(shards):
            total = sum(layout.counts[split])
            self.plans_written[split] = asyncio.ensure_future(asyncio.to_thread(self._write_plan, split, total))
        return shards

    def _write_plan(self, split: str, total: int) -> None:
        order = split_order(split, total, seed=self.options.seed, shuffle=self.options.shuffle)
        try:
            # Not fsynced: every run writes it again before a worker reads it (fsync: up to 0.45 s).
            atomic.write_npy(plan_path(self.state, split), order, durable=False)
        except OSError as error:
            raise output_error(error, self.state) from None

    async def render(self, shards: dict[str, tuple[Shard, ...]], build_id: str) -> dict[str, ShardRecord]:
        """Every shard of ``shards``: reused where the journal lists it intact, else rendered from the
        store of the layout ``build_id`` names and sealed; the smallest split first."""
        done = await self._reusable_shards(shards)
        todo = [shard for split in render_order(shards) for shard in shards[split] if shard.name not in done]
        self.reporter.stage("render", sum(shard.count for shard in todo))
        parts = self.state / PARTS_DIR
        shutil.rmtree(parts, ignore_errors=True)  # a previous attempt's fragments: rewritten anyway
        try:
            os.makedirs(parts)
        except OSError as error:
            raise output_error(error, parts) from None
        whole = whole_shards(todo, self.inflight // 2, self.options.render) if self._may_render_whole() else frozenset()
        written = await ShardWriter(self, todo, build_id, whole).run()
        # Every shard is sealed: what is left is a killed worker's temp file, which no task will finish.
        shutil.rmtree(parts, ignore_errors=True)
        done.update({record.file: record for record in written})
        return done

    def _may_render_whole(self) -> bool:
        # Not with --chunk-size, which sets every task's size, nor onto object storage, whose
        # shards are sealed in the work folder and uploaded by the seal task.
        return self.chunk_size is None and self.output.is_local

    async def _reusable_shards(self, shards: dict[str, tuple[Shard, ...]]) -> dict[str, ShardRecord]:
        """Journaled shards that are still there with their recorded size (and locally, sha256), and
        their DALI index if the build writes them. Local shards are re-hashed on the workers, all at
        once: the parent does no per-byte work, also when a resume finds hundreds of GB in place."""
        output = self.output
        expected = {shard.name: shard for in_split in shards.values() for shard in in_split}
        found, to_hash = {}, {}
        for name, record in self.journal.load().items():
            shard = expected.get(name)
            if shard is None or record.count != shard.count:
                continue
            if self.options.dali_index and not output.exists(dali.index_name(name)):  # deleted: render it again
                continue
            if not output.is_local:
                if reusable(output, record):
                    found[name] = record
                continue
            path = output.path(name)
            if path.is_file() and path.stat().st_size == record.bytes:
                to_hash[name] = record
        digests = await asyncio.gather(
            *(self.submit(file_digest, output.path(name)) for name in to_hash), return_exceptions=True
        )
        for (name, record), digest in zip(to_hash.items(), digests):
            if isinstance(digest, BaseException) and not isinstance(digest, OSError):
                raise digest  # a broken pool, not a shard that changed
            if not isinstance(digest, BaseException) and digest[1] == record.sha256:
                found[name] = record
        return found

    def index(self, inputs: Inputs, shards: dict[str, tuple[Shard, ...]], done: dict[str, ShardRecord]) -> BuildResult:
        """Write the wids indexes, the dataset card and, last, the manifest: the build is then finished."""
        kept, layout = inputs.kept, inputs.layout
        by_split = {split: [done[shard.name] for shard in in_split] for split, in_split in shards.items()}
        result_manifest = manifest.build_manifest(
            classes=layout.classes,
            sources=layout.sources,
            options=self.options.to_dict(),
            splits=by_split,
            blank={split: sum(r.blank.get(split, 0) for _, r in kept) for split in shards},
            skipped=[item for _, record in kept for item in record.skipped],
            skipped_files=inputs.skipped_files,
            class_counts=layout.counts,
        )
        if self.options.drawings.filters:
            result_manifest["filtered"] = filtered_counts([record for _, record in kept])
        try:
            manifest.write_index(self.output, result_manifest, by_split)
        except OSError as error:
            raise output_error(error, self.output.root) from None
        except Exception as error:
            if not is_storage_error(error):
                raise
            raise storage_error(error, self.output.root, "write the manifest") from None
        dst = self.output.path() if self.output.is_local else self.output.root
        reused = sum(name not in self.tally.sealed for name in done)
        return BuildResult(dst, result_manifest, self.tally.images, len(self.tally.sealed), reused, 0.0)


async def _gather_or_cancel(coroutines):
    """Like ``asyncio.gather`` but cancels the siblings when one fails (3.10 has no TaskGroup)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def chunk_samples(chunk_size: int | None, render: RenderOptions, count: int, procs: int) -> int:
    """Samples per chunk task: ``chunk_size``, or by default enough for ``CHUNKS_PER_WORKER`` chunks
    a worker (within ``CHUNK_SAMPLES``); fewer where their output would exceed ``CHUNK_BYTES``.

    The parent's cost is per task (~0.1-0.4 ms of its CPU each, measured), so chunks are as large
    as keeping every worker busy allows. In-flight work is bounded in bytes as well as in tasks: at
    most ``2 * procs`` chunks are out, each at most ``CHUNK_BYTES`` of fragment on disk, while a
    worker holds one render batch (``worker.RENDER_BATCH_BYTES``, or one image when images are
    larger). Chunks never change the output's bytes.
    """
    if chunk_size is None:
        smallest, largest = CHUNK_SAMPLES
        chunk_size = max(smallest, min(largest, -(-count // (CHUNKS_PER_WORKER * max(1, procs)))))
    return max(1, min(chunk_size, CHUNK_BYTES // estimated_image_bytes(render)))


def render_order(shards: dict[str, tuple[Shard, ...]]) -> list[str]:
    """The splits in their order, the smallest moved first: it renders while the largest one's plan is
    shuffled (see ``Build.plan``), and the build still ends on small shards, the cheapest tail."""
    smallest = min(shards, key=lambda split: sum(shard.count for shard in shards[split]), default=None)
    return sorted(shards, key=lambda split: split != smallest)


def whole_shards(todo: list[Shard], workers: int, render: RenderOptions) -> frozenset[str]:
    """The shards of ``todo`` (in plan order) that one task each renders whole, straight into place.

    A shard of several chunks costs a second pass: its fragments are read back, hashed and copied
    into the shard by a seal task. Rendered whole, it is hashed as it is written. Chunks keep every
    worker busy when shards are few, so every shard but the last ``TAIL_ROUNDS`` per worker is
    rendered whole, and those last ones keep their chunks: the build's end still spreads over
    every worker. A shard whose output is estimated above ``WHOLE_SHARD_BYTES`` keeps its chunks
    (large images: the progress bar and a retry would wait on a long task).
    """
    head = todo[: max(0, len(todo) - TAIL_ROUNDS * workers)]
    return frozenset(shard.name for shard in head if shard.count * estimated_image_bytes(render) <= WHOLE_SHARD_BYTES)


def estimated_image_bytes(render: RenderOptions) -> int:
    """A generous estimate of one encoded image's size: raw for npy, far less for line drawings."""
    raw = render.size * render.size * render.channels
    return raw + 128 if render.format == "npy" else raw // 4


def splits_present(kept: list[tuple[SourceFile, ClassRecord]], options: BuildOptions) -> list[str]:
    if not kept:
        raise InputError("no input file could be read; nothing to build")
    present = [split for split in SPLITS if any(split in record.counts for _, record in kept)]
    if options.splits:
        missing = [split for split in options.splits if split not in present]
        if missing:
            raise UsageError(f"no input holds the split(s) {', '.join(missing)}; present: {', '.join(present)}")
        present = [split for split in SPLITS if split in options.splits]
    if not any(record.counts.get(split, 0) for split in present for _, record in kept):
        invalid = sum(len(record.skipped) for _, record in kept)
        held = f"only invalid sketches ({invalid} skipped)" if invalid else "no sketches"
        raise InputError(f"the inputs hold {held}; nothing to build")
    return present
