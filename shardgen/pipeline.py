"""The orchestrator: read -> store -> plan -> render (workers) -> write -> index.

An asyncio event loop submits small task descriptions to any ``concurrent.futures.Executor``
(a process pool here, a Dask cluster's executor elsewhere) with ``executor.submit_task`` (that is
``loop.run_in_executor`` without a cancellation race) and keeps a bounded number in flight through
an ``asyncio.Queue`` of futures. Workers write what they render (``fragments``); the writer
coroutine here follows each shard's chunks in plan order, has the shard sealed on a worker when
its last chunk is in, and journals it. The parent never touches an image byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic, dali, faults, manifest
from .cluster import DaskExecutor, connect
from .errors import InputError, Interrupted, OutputError, UsageError, WorkerError
from .executor import StopOnSignals, new_pool, stop_pool, submit_task
from .formats import is_drawing_file
from .formats.ingest import check_sources, check_timed, drawing_task, filtered_counts, ingest_drawings
from .formats.select import DrawingOptions
from .fragments import PARTS_DIR, fragment_path, partial_path, seal_shard
from .location import Location, is_storage_error, is_url, storage_error
from .mainguard import check_main_guard
from .objectstore import RecordJournal, default_work_dir, reusable, seal_and_upload
from .output import (
    JOURNAL_FILE,
    STATE_DIR,
    fingerprint,
    locked,
    owned_files,
    prepare_output,
    record_outputs,
    remove_partials,
    shard_folder,
)
from .plan import Shard, SplitPlan, plan_path, plan_split
from .read import SPLITS, SourceFile, discover
from .render import RenderOptions
from .store import ClassRecord, IngestTask, ingest
from .worker import LAYOUT_FILE, ChunkTask, render_chunk
from .write import Journal, ShardRecord, file_digest, output_error

ON_ERROR = ("skip-sketches", "skip", "fail")
SHARED = "every worker needs it at the same path, on a shared filesystem"
CHUNK_BYTES = 32 << 20  # the most output one chunk task writes (see chunk_samples)
CHUNK_SAMPLES = (256, 4096)  # the default chunk size's range
CHUNKS_PER_WORKER = 8


@dataclass(frozen=True)
class BuildOptions:
    """Everything that decides the output bytes (``procs`` and ``chunk_size`` do not)."""

    render: RenderOptions = field(default_factory=RenderOptions)
    shard_size: int = 10_000
    splits: tuple[str, ...] | None = None  # None: every split present in the inputs
    limit: int | None = None  # at most this many sketches per category and split
    seed: int = 0
    shuffle: bool = True
    on_error: str = "skip-sketches"
    drawings: DrawingOptions = field(default_factory=DrawingOptions)  # QuickDraw inputs: splits, filters
    dali_index: bool = False  # also write {shard}.idx, the index NVIDIA DALI's webdataset reader takes

    def check(self) -> None:
        try:
            self.render.check()
            self.drawings.check()
        except ValueError as error:
            raise UsageError(str(error)) from None
        if self.shard_size < 1:
            raise UsageError(f"shard size must be at least 1, got {self.shard_size}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"limit must be at least 1, got {self.limit}")
        if self.seed < 0:
            raise UsageError(f"seed must be zero or positive, got {self.seed}")
        if self.on_error not in ON_ERROR:
            raise UsageError(f"on-error must be one of {', '.join(ON_ERROR)}, got {self.on_error!r}")
        for split in self.splits or ():
            if split not in SPLITS:
                raise UsageError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")

    def to_dict(self) -> dict:
        return {
            "render": self.render.to_dict(),
            "shard_size": self.shard_size,
            "splits": list(self.splits) if self.splits else None,
            "limit": self.limit,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "on_error": self.on_error,
            **({"drawings": self.drawings.to_dict()} if self.drawings.to_dict() else {}),
            # recorded only when set: other builds keep the manifest and identity they had
            **({"dali_index": True} if self.dali_index else {}),
        }


class Reporter:
    """Receives progress; the CLI draws it, a library caller may ignore it. Methods are no-ops."""

    def stage(self, name: str, total: int) -> None:
        """A stage starts: ``ingest`` (total files) or ``render`` (total images to render)."""

    def advance(self, count: int) -> None:
        """``count`` more units of the current stage are done."""

    def shard_done(self, record: ShardRecord, seconds: float) -> None:
        """A shard was sealed under its final name."""

    def warn(self, message: str) -> None:
        """Something was skipped; the build goes on."""

    def skip(self, count: int) -> None:
        """``count`` more inputs (invalid sketches or unreadable files) were left out."""


@dataclass
class BuildResult:
    """What a build produced: the manifest plus a few figures for the summary."""

    dst: Path
    manifest: dict
    images_rendered: int
    shards_written: int
    shards_reused: int
    seconds: float

    @property
    def images(self) -> int:
        return sum(s["count"] for s in self.manifest["splits"].values())


def build(
    src: Path | str,
    dst: Path | str,
    options: BuildOptions = BuildOptions(),
    *,
    procs: int | None = None,
    executor: Executor | None = None,
    scheduler: str | None = None,
    storage_options: dict | None = None,
    work_dir: Path | str | None = None,
    chunk_size: int | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Build WebDataset shards in ``dst`` from the sketch files in ``src``; resumes if it can.

    ``executor`` may be any ``concurrent.futures.Executor`` whose workers can import shardgen and
    read ``dst``; by default a process pool of ``procs`` workers (all cores) is created, and if one
    of its workers dies the build resumes once in a fresh pool before giving up. ``scheduler``
    (``tcp://host:8786``) runs the tasks on that Dask cluster instead (see :mod:`shardgen.cluster`).
    ``src`` and ``dst`` may be fsspec URLs (``s3://bucket/npz``), reached with ``storage_options``;
    with ``dst`` a URL, the packed store, plan and chunk fragments go to ``work_dir`` (a shared
    filesystem for a cluster; by default a folder under the system's temp dir named after DST).

    SIGINT and SIGTERM (in the main thread) stop the build cleanly: pending chunks are cancelled,
    the shard being written is discarded, completed shards stay, and :class:`Interrupted` is raised.
    """
    options.check()
    if chunk_size is not None and chunk_size < 1:
        raise UsageError(f"chunk size must be at least 1, got {chunk_size}")
    if scheduler is not None:
        if executor is not None:
            raise UsageError("pass either an executor or a Dask scheduler address, not both")
        dask = connect(scheduler)
        # workers resolve relative paths against their own folder: give them absolute ones
        src, dst = (target if is_url(target) else Path(target).absolute() for target in (src, dst))
        try:
            return build(
                src,
                dst,
                options,
                procs=procs or dask.threads,
                executor=dask,
                storage_options=storage_options,
                work_dir=Path(work_dir).absolute() if work_dir else None,
                chunk_size=chunk_size,
                overwrite=overwrite,
                reporter=reporter,
            )
        finally:
            dask.shutdown(cancel_futures=True)
    if executor is None:
        check_main_guard()  # before DST is touched: an unguarded script would re-run this in every worker
    procs = procs or os.cpu_count() or 1
    reporter = reporter or Reporter()
    sources = discover(src if is_url(src) else Path(src), storage_options)
    output = Location.of(dst, storage_options)
    state = output.path(STATE_DIR) if output.is_local else Path(work_dir or default_work_dir(output.root))
    check_sources(sources, options.drawings, options.render.color)
    with StopOnSignals() as signals, locked(output, state):
        prepare_output(output, state, sources, options, overwrite, reporter.warn)
        if isinstance(executor, DaskExecutor):
            executor.check_reach(Location.of(state), SHARED if output.is_local else SHARED + " (pass --work-dir)")
            if not output.is_local:
                executor.check_reach(output.child(STATE_DIR), "every worker needs DST's credentials and endpoint")
        started = time.perf_counter()
        tally = _Tally()
        attempts = 1 if executor is not None else 2
        for attempt in range(attempts):
            pool = executor or new_pool(procs)
            failed, broken = True, False
            try:
                work = _build(sources, output, state, options, pool, 2 * procs, chunk_size, reporter, tally)
                result = _run_to_completion(signals.run(work))
                if result is None:
                    raise Interrupted(signals.received or signal.SIGINT)
                failed = False
                break
            except WorkerError as error:
                broken = True
                if signals.received is not None:  # a signal to the group kills workers too: not their fault
                    raise Interrupted(signals.received) from None
                if attempt + 1 == attempts:
                    raise
                reporter.warn(f"{error}; retrying once in a fresh worker pool")
            except Exception:
                # A stop signal to the group also reaches the fork server: starting a worker then
                # fails (EOFError), or a file operation is cut short. The signal is the cause.
                if signals.received is not None:
                    raise Interrupted(signals.received) from None
                raise
            finally:
                if executor is None:
                    stop_pool(pool, kill=failed and not broken)
                if failed:
                    # Cancelled file operations finish in threads after their coroutine gave up;
                    # the loop has joined those threads now, so no partial shard can reappear.
                    with contextlib.suppress(OSError):
                        remove_partials(shard_folder(output, state), owned_files(output, state))
                    shutil.rmtree(state / PARTS_DIR, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Tally:
    """What this call of :func:`build` rendered, across a retry in a fresh pool."""

    images: int = 0
    sealed: set[str] = field(default_factory=set)


def _run_to_completion(coroutine):
    """``asyncio.run``, also from code that already runs an event loop (a Jupyter notebook, an
    async training script): there the build gets a loop of its own in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1, thread_name_prefix="shardgen-build") as thread:
        return thread.submit(asyncio.run, coroutine).result()


async def _build(sources, output, state, options, executor, inflight, chunk_size, reporter, tally):
    loop = asyncio.get_running_loop()
    records, skipped_files = await _ingest_all(sources, state, options, executor, loop, reporter)
    kept = [(source, record) for source, record in zip(sources, records) if record is not None]
    check_timed(kept, options.render.color)
    splits = splits_present(kept, options)
    layout: dict[str, Any] = {
        "classes": [record.category for _, record in kept],
        "sources": [source.name for source, _ in kept],
        "store_ids": [sources.index(source) for source, _ in kept],
        "counts": {split: [record.counts.get(split, 0) for _, record in kept] for split in splits},
    }
    plans = {
        split: plan_split(
            split,
            tuple(layout["counts"][split]),
            seed=options.seed,
            shuffle=options.shuffle,
            shard_size=options.shard_size,
            chunk_size=chunk_samples(chunk_size, options.render, sum(layout["counts"][split]), inflight // 2),
        )
        for split in splits
    }
    try:
        atomic.write_json(state / LAYOUT_FILE, layout)
        for split, plan in plans.items():
            atomic.write_npy(plan_path(state, split), plan.order)
        shards = [shard.name for plan in plans.values() for shard in plan.shards]
        indexes = [dali.index_name(name) for name in shards] if options.dali_index else []
        wids = [f"{split}.wids.json" for split in splits]
        record_outputs(output, [*shards, *indexes, *wids, manifest.MANIFEST])  # the card: see output.clean_output
    except OSError as error:
        raise output_error(error, state) from None

    journal = Journal(state / JOURNAL_FILE) if output.is_local else RecordJournal(output.child(STATE_DIR))
    done = await _reusable_shards(output, plans, journal, executor, loop, options.dali_index)
    reused = sum(name not in tally.sealed for name in done)
    todo = [shard for plan in plans.values() for shard in plan.shards if shard.name not in done]
    reporter.stage("render", sum(shard.count for shard in todo))
    written = await _render_shards(todo, output, state, options, executor, loop, inflight, journal, reporter, tally)
    done.update({record.file: record for record in written})

    by_split = {split: [done[s.name] for s in plan.shards] for split, plan in plans.items()}
    result_manifest = manifest.build_manifest(
        classes=layout["classes"],
        sources=layout["sources"],
        options=options.to_dict(),
        splits=by_split,
        blank={split: sum(r.blank.get(split, 0) for _, r in kept) for split in splits},
        skipped=[item for _, record in kept for item in record.skipped],
        skipped_files=skipped_files,
        class_counts=layout["counts"],
    )
    if options.drawings.filters:
        result_manifest["filtered"] = filtered_counts([record for _, record in kept])
    try:
        manifest.write_index(output, result_manifest, by_split)
    except OSError as error:
        raise output_error(error, output.root) from None
    except Exception as error:
        if not is_storage_error(error):
            raise
        raise storage_error(error, output.root, "write the manifest") from None
    dst = output.path() if output.is_local else output.root
    return BuildResult(dst, result_manifest, tally.images, len(tally.sealed), reused, 0.0)


def chunk_samples(chunk_size: int | None, render: RenderOptions, count: int, procs: int) -> int:
    """Samples per chunk task: ``chunk_size``, or by default enough for ``CHUNKS_PER_WORKER`` chunks
    a worker (within ``CHUNK_SAMPLES``); fewer where their output would exceed ``CHUNK_BYTES``.

    The parent's cost is per task (~0.1-0.4 ms of its CPU each, measured), so chunks are as large
    as keeping every worker busy allows. In-flight work is bounded in bytes as well as in tasks: at
    most ``2 * procs`` chunks are out, each at most ``CHUNK_BYTES`` of fragment on disk, while a
    worker holds one image at a time. Chunks never change the output's bytes.
    """
    if chunk_size is None:
        smallest, largest = CHUNK_SAMPLES
        chunk_size = max(smallest, min(largest, -(-count // (CHUNKS_PER_WORKER * max(1, procs)))))
    raw = render.size * render.size * render.channels
    estimate = raw + 128 if render.format == "npy" else raw // 4  # encoded line drawings: far less
    return max(1, min(chunk_size, CHUNK_BYTES // estimate))


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


async def _ingest_all(sources, state, options, executor, loop, reporter):
    """Pack every source into the store, in parallel; bad files fail or are skipped per on_error."""
    reporter.stage("ingest", len(sources))
    splits = tuple(options.splits or SPLITS)
    fingerprints = fingerprint(sources)

    async def one(position: int, source: SourceFile) -> ClassRecord | dict:
        task = IngestTask(
            source,
            position,
            state / "store",
            splits,
            options.limit,
            options.on_error,
            json.dumps([fingerprints[position], splits, options.limit, options.on_error]),
        )
        read: Callable[[Any], ClassRecord] = ingest  # takes the task chosen with it
        if is_drawing_file(source.path):
            task, read = drawing_task(task, options.drawings, options.seed), ingest_drawings
        try:
            record = await submit_task(loop, executor, read, task)
        except InputError as error:
            if options.on_error != "skip":
                raise
            reporter.warn(f"skipped {error}")
            reporter.skip(1)
            return {"source": source.name, "reason": error.message}
        except BrokenProcessPool:
            raise WorkerError(
                "a worker process died while reading it (killed by the system, out of memory?)", source.path
            ) from None
        except OSError as error:  # reading errors are InputErrors; this is the store failing to write
            raise output_error(error, Path(error.filename or state / "store")) from None
        finally:
            reporter.advance(1)
        return record

    outcomes = await _gather_or_cancel([one(i, s) for i, s in enumerate(sources)])
    records = [o if isinstance(o, ClassRecord) else None for o in outcomes]
    skipped_files = [o for o in outcomes if isinstance(o, dict)]
    for record in records:
        if record is not None and record.skipped:
            reporter.warn(f"{record.source}: skipped {len(record.skipped)} invalid sketch(es)")
            reporter.skip(len(record.skipped))
    return records, skipped_files


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


async def _reusable_shards(
    output: Location, plans: dict[str, SplitPlan], journal, executor, loop, dali_index: bool = False
) -> dict[str, ShardRecord]:
    """Journaled shards that are still there with their recorded size (and locally, sha256), and
    their DALI index if the build writes them. Local shards are re-hashed on the workers, all at
    once: the parent does no per-byte work, also when a resume finds hundreds of GB in place."""
    expected = {shard.name: shard for plan in plans.values() for shard in plan.shards}
    found, to_hash = {}, {}
    for name, record in journal.load().items():
        shard = expected.get(name)
        if shard is None or record.count != shard.count:
            continue
        if dali_index and not output.exists(dali.index_name(name)):  # deleted since: render the shard again
            continue
        if not output.is_local:
            if reusable(output, record):
                found[name] = record
            continue
        path = output.path(name)
        if path.is_file() and path.stat().st_size == record.bytes:
            to_hash[name] = record
    digests = await asyncio.gather(
        *(submit_task(loop, executor, file_digest, output.path(name)) for name in to_hash), return_exceptions=True
    )
    for (name, record), digest in zip(to_hash.items(), digests):
        if isinstance(digest, BaseException) and not isinstance(digest, OSError):
            raise digest  # a broken pool, not a shard that changed
        if not isinstance(digest, BaseException) and digest[1] == record.sha256:
            found[name] = record
    return found


async def _render_shards(
    shards: list[Shard], output, state, options, executor, loop, inflight, journal, reporter, tally
) -> list[ShardRecord]:
    """Render ``shards`` chunk by chunk into fragments, at most ``inflight`` chunks out at once, and
    have each shard sealed on a worker once its last chunk is in; journal what was sealed."""
    parts = state / PARTS_DIR
    shutil.rmtree(parts, ignore_errors=True)  # a previous attempt's fragments: rewritten anyway
    try:
        os.makedirs(parts)
    except OSError as error:
        raise output_error(error, parts) from None
    queue: asyncio.Queue = asyncio.Queue(maxsize=inflight)
    writer = asyncio.current_task()
    assert writer is not None  # a coroutine of the build's event loop
    failures: list[BaseException] = []
    stopping = False

    def stop_writer(task: asyncio.Future) -> None:
        # A seal that could not write (disk full) stops the build now, not after every chunk; a
        # submitter that failed would leave the writer waiting for chunks that never come.
        error = None if stopping or failures or task.cancelled() else task.exception()
        if error is None:
            return
        if task is submitter or isinstance(error, OutputError):
            failures.append(error)
            writer.cancel()

    async def submit() -> None:
        for shard in shards:
            for start, stop in shard.chunks():
                fragment = fragment_path(state, shard.name, start)
                task = ChunkTask(
                    state, shard.split, start, stop, options.render, options.seed, fragment, options.dali_index
                )
                try:
                    future = submit_task(loop, executor, render_chunk, task)
                except BrokenProcessPool as error:  # the writer reports it, naming this chunk
                    future = loop.create_future()
                    future.set_exception(error)
                try:
                    await queue.put((shard, start, stop, future))  # waits while `inflight` chunks are out
                except BaseException:
                    _drop(future)  # stopped before queueing it: nobody else will look at it
                    raise
        await queue.put(None)

    written: list[ShardRecord] = []
    sealing: list[asyncio.Future] = []

    async def seal(shard: Shard, position: int, began: float) -> None:
        path = shard_folder(output, state) / shard.name
        fragments = [fragment_path(state, shard.name, start) for start, _ in shard.chunks()]
        # With DST a URL the same worker uploads the sealed shard: only then is its object visible.
        sealer, upload_to = (seal_shard, ()) if output.is_local else (seal_and_upload, (output,))
        try:
            size, sha256 = await submit_task(
                loop, executor, sealer, fragments, path, position, *upload_to, options.dali_index
            )
        except BrokenProcessPool:
            raise WorkerError(f"a worker process died while sealing {shard.name}") from None
        except OSError as error:
            raise output_error(error, Path(error.filename or partial_path(path))) from None
        record = ShardRecord(shard.name, shard.count, size, sha256)
        if faults.ACTIVE:
            faults.point("journal")
        # In a thread: an fsync (or, on object storage, a PUT) must not stall the loop that keeps
        # every worker fed.
        await asyncio.to_thread(journal.append, record)
        tally.sealed.add(record.file)
        tally.images += record.count
        written.append(record)
        reporter.shard_done(record, time.perf_counter() - began)

    submitter = asyncio.ensure_future(submit())
    submitter.add_done_callback(stop_writer)
    began: dict[str, float] = {}
    try:
        while (item := await queue.get()) is not None:
            shard, start, stop, future = item
            began.setdefault(shard.name, time.perf_counter())
            await _chunk_done(shard, start, stop, future)
            reporter.advance(stop - start)
            if faults.ACTIVE:
                faults.point("append")
            if stop == shard.stop:
                sealing.append(asyncio.ensure_future(seal(shard, len(sealing), began.pop(shard.name))))
                sealing[-1].add_done_callback(stop_writer)
        await submitter
        await asyncio.gather(*sealing)
    except BaseException as error:
        stopping = True
        submitter.cancel()
        with contextlib.suppress(BaseException):
            await submitter
        # Shards already complete are still sealed and journaled: a failure in a later shard, or a
        # stop signal, must not cost finished work. A seal that fails is dropped.
        await asyncio.gather(*sealing, return_exceptions=True)
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                _drop(item[3])
        if failures and isinstance(error, asyncio.CancelledError):
            raise failures[0] from None
        raise
    with contextlib.suppress(OSError):
        parts.rmdir()
    return written


def _drop(future: asyncio.Future) -> None:
    """Give up on a chunk nobody will wait for; a failure it already holds counts as seen."""
    if future.done() and not future.cancelled():
        future.exception()
    future.cancel()


async def _chunk_done(shard: Shard, start: int, stop: int, future: asyncio.Future) -> int:
    """Wait for one chunk's fragment; a dead worker or a failed write becomes a one-line error."""
    try:
        return await future
    except BrokenProcessPool:
        raise WorkerError(
            f"a worker process died while rendering {shard.name} (split {shard.split}, plan positions "
            f"{start}-{stop}; killed by the system, out of memory?); completed shards are kept, "
            "rerun the same command to resume"
        ) from None
    except OSError as error:
        raise output_error(error, Path(error.filename or PARTS_DIR)) from None
