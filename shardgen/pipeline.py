"""The orchestrator: read -> store -> plan -> render (workers) -> write -> index.

An asyncio event loop submits small task descriptions to any ``concurrent.futures.Executor``
(a process pool here, a Dask cluster's executor elsewhere) with ``executor.submit_task`` (that is
``loop.run_in_executor`` without a cancellation race), keeps a bounded number in flight through an
``asyncio.Queue`` of futures, and appends finished chunks to their shard in plan order. The parent
never touches a single image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, card, faults, manifest
from .errors import InputError, Interrupted, OptionsChangedError, UsageError, WorkerError
from .executor import StopOnSignals, new_pool, stop_pool, submit_task
from .mainguard import check_main_guard
from .plan import Shard, SplitPlan, plan_path, plan_split
from .read import SPLITS, SourceFile, discover
from .render import RenderOptions
from .store import ClassRecord, IngestTask, ingest
from .worker import LAYOUT_FILE, ChunkTask, render_chunk
from .write import PARTIAL_SUFFIX, Journal, ShardFile, ShardRecord, file_digest, file_digests, output_error

STATE_DIR = ".shardgen"
BUILD_FILE = "build.json"
ON_ERROR = ("skip-sketches", "skip", "fail")


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

    def check(self) -> None:
        try:
            self.render.check()
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
    src: Path,
    dst: Path,
    options: BuildOptions = BuildOptions(),
    *,
    procs: int | None = None,
    executor: Executor | None = None,
    chunk_size: int = 256,
    overwrite: bool = False,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Build WebDataset shards in ``dst`` from the ``.npz`` files in ``src``; resumes if it can.

    ``executor`` may be any ``concurrent.futures.Executor`` whose workers can import shardgen and
    read ``dst``; by default a process pool of ``procs`` workers (all cores) is created, and if one
    of its workers dies the build resumes once in a fresh pool before giving up.

    SIGINT and SIGTERM (in the main thread) stop the build cleanly: pending chunks are cancelled,
    the shard being written is discarded, completed shards stay, and :class:`Interrupted` is raised.
    """
    options.check()
    if chunk_size < 1:
        raise UsageError(f"chunk size must be at least 1, got {chunk_size}")
    if executor is None:
        check_main_guard()  # before DST is touched: an unguarded script would re-run this in every worker
    procs = procs or os.cpu_count() or 1
    reporter = reporter or Reporter()
    src, dst = Path(src), Path(dst)
    sources = discover(src)
    with StopOnSignals() as signals:
        state = prepare_output(dst, sources, options, overwrite)
        started = time.perf_counter()
        tally = _Tally()
        attempts = 1 if executor is not None else 2
        for attempt in range(attempts):
            pool = executor or new_pool(procs)
            failed, broken = True, False
            try:
                work = _build(sources, dst, state, options, pool, 2 * procs, chunk_size, reporter, tally)
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
            finally:
                if executor is None:
                    stop_pool(pool, kill=failed and not broken)
                if failed:
                    # Cancelled file operations finish in threads after their coroutine gave up;
                    # the loop has joined those threads now, so no partial shard can reappear.
                    for partial in dst.glob("*.tar" + PARTIAL_SUFFIX):
                        with contextlib.suppress(OSError):
                            partial.unlink()
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


def fingerprint(sources: list[SourceFile]) -> list[dict]:
    """Identify the inputs cheaply (name, size, mtime), as make and rsync do."""
    out = []
    for source in sources:
        stat = source.path.stat()
        out.append({"file": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return out


def prepare_output(dst: Path, sources: list[SourceFile], options: BuildOptions, overwrite: bool) -> Path:
    """Check DST, refuse a rerun with other inputs or options, and record this build's identity.

    Returns the state folder (``DST/.shardgen``).
    """
    if dst.exists() and not dst.is_dir():
        raise UsageError("output must be a folder, but a file exists there", dst)
    state = dst / STATE_DIR
    identity = {"inputs": fingerprint(sources), "options": options.to_dict()}
    previous = _read_json(state / BUILD_FILE)
    if overwrite:
        clean_output(dst)
    elif previous is not None and previous != identity:
        raise OptionsChangedError(
            f"holds a build with other {describe_difference(previous, identity)}; "
            "rerun with --overwrite to replace it, or choose another output folder",
            dst,
        )
    elif previous is None and dst.exists() and any(p.name != STATE_DIR for p in dst.iterdir()):
        # (a state folder alone is a first build that stopped before recording its identity)
        raise UsageError(
            "output folder is not empty and holds no shardgen build; choose an empty folder or pass --overwrite",
            dst,
        )
    try:
        os.makedirs(state / "store", exist_ok=True)
        atomic.write_json(state / BUILD_FILE, identity)
        remove_leftovers(dst)
    except OSError as error:
        raise output_error(error, state) from None
    return state


def remove_leftovers(dst: Path) -> None:
    """Delete what an interrupted build may leave: ``*.tar.partial`` and ``.NAME.tmp`` files.

    Only names shardgen itself writes are touched; a resumed build rewrites what they stood for.
    """
    state = dst / STATE_DIR
    for path in dst.glob("*.tar" + PARTIAL_SUFFIX):
        path.unlink()
    for folder in (dst, state, state / "store", *(state / "store" / split for split in SPLITS)):
        for path in folder.glob(".*.tmp"):
            path.unlink()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def describe_difference(old: dict, new: dict) -> str:
    """Name what differs between two build identities, e.g. ``options (seed: 0 -> 1)``."""
    if old.get("inputs") != new.get("inputs"):
        old_files = {i["file"]: i for i in old.get("inputs", [])}
        new_files = {i["file"]: i for i in new["inputs"]}
        changed = sorted(f for f in old_files.keys() | new_files.keys() if old_files.get(f) != new_files.get(f))
        return f"inputs ({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''} changed)"
    diffs = []
    old_opts, new_opts = _flatten(old.get("options", {})), _flatten(new["options"])
    for name in sorted(old_opts.keys() | new_opts.keys()):
        if old_opts.get(name) != new_opts.get(name):
            diffs.append(f"{name}: {old_opts.get(name)} -> {new_opts.get(name)}")
    return f"options ({'; '.join(diffs)})"


def _flatten(options: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def clean_output(dst: Path) -> None:
    """Remove what a shardgen build writes in ``dst`` (shards, indexes, card, state), nothing else."""
    if not dst.is_dir():
        return
    for path in dst.iterdir():
        name = path.name
        if name == STATE_DIR:
            shutil.rmtree(path)
        elif (
            name.endswith((".tar", ".tar" + PARTIAL_SUFFIX, ".wids.json"))
            or name == manifest.MANIFEST
            or (name == card.CARD and card.written_by_shardgen(path))  # never a README.md of the user's
        ):
            path.unlink()


async def _build(sources, dst, state, options, executor, inflight, chunk_size, reporter, tally):
    loop = asyncio.get_running_loop()
    records, skipped_files = await _ingest_all(sources, state, options, executor, loop, reporter)
    kept = [(source, record) for source, record in zip(sources, records) if record is not None]
    splits = splits_present(kept, options)
    layout = {
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
            chunk_size=chunk_size,
        )
        for split in splits
    }
    try:
        atomic.write_json(state / LAYOUT_FILE, layout)
        for split, plan in plans.items():
            atomic.write_npy(plan_path(state, split), plan.order)
    except OSError as error:
        raise output_error(error, state) from None

    journal = Journal(state / "journal.jsonl")
    done = _reusable_shards(dst, plans, journal)
    reused = sum(name not in tally.sealed for name in done)
    todo = [shard for plan in plans.values() for shard in plan.shards if shard.name not in done]
    reporter.stage("render", sum(shard.count for shard in todo))
    written = await _render_shards(todo, dst, state, options, executor, loop, inflight, journal, reporter, tally)
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
    try:
        manifest.write_index(dst, result_manifest, by_split)
    except OSError as error:
        raise output_error(error, dst) from None
    return BuildResult(dst, result_manifest, tally.images, len(tally.sealed), reused, 0.0)


def splits_present(kept: list[tuple[SourceFile, ClassRecord]], options: BuildOptions) -> list[str]:
    if not kept:
        raise InputError("no input file could be read; nothing to build")
    present = [split for split in SPLITS if any(split in record.counts for _, record in kept)]
    if options.splits:
        missing = [split for split in options.splits if split not in present]
        if missing:
            raise UsageError(f"no input holds the split(s) {', '.join(missing)}; present: {', '.join(present)}")
        return [split for split in SPLITS if split in options.splits]
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
        try:
            record = await submit_task(loop, executor, ingest, task)
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


def _reusable_shards(dst: Path, plans: dict[str, SplitPlan], journal: Journal) -> dict[str, ShardRecord]:
    """Journaled shards that are still on disk with their recorded size and sha256."""
    expected = {shard.name: shard for plan in plans.values() for shard in plan.shards}
    reusable = {}
    for name, record in journal.load().items():
        shard = expected.get(name)
        path = dst / name
        if shard is None or record.count != shard.count or not path.is_file():
            continue
        if path.stat().st_size == record.bytes and file_digest(path)[1] == record.sha256:
            reusable[name] = record
    return reusable


async def _render_shards(
    shards: list[Shard], dst, state, options, executor, loop, inflight, journal, reporter, tally
) -> list[ShardRecord]:
    """Render ``shards`` chunk by chunk, at most ``inflight`` chunks submitted at once."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=inflight)
    unqueued: list[asyncio.Future] = []  # submitted, but the submitter was stopped before queueing it

    async def submit() -> None:
        for shard in shards:
            for start, stop in shard.chunks():
                task = ChunkTask(state, shard.split, start, stop, options.render, options.seed)
                future = submit_task(loop, executor, render_chunk, task)
                try:
                    await queue.put((shard, start, stop, future))  # waits while `inflight` chunks are out
                except BaseException:
                    unqueued.append(future)
                    raise
        await queue.put(None)

    written: list[ShardRecord] = []
    publishing: list[asyncio.Future] = []

    async def publish(shard_file: ShardFile, began: float) -> None:
        # Hash on a worker (the parent does no per-byte work), then rename and journal here.
        try:
            digests = await submit_task(loop, executor, file_digests, shard_file.partial)
        except BrokenProcessPool:
            raise WorkerError(f"a worker process died while hashing {shard_file.path.name}") from None
        record = await shard_file.publish(digests)
        if faults.ACTIVE:
            faults.point("journal")
        journal.append(record)
        tally.sealed.add(record.file)
        tally.images += record.count
        written.append(record)
        reporter.shard_done(record, time.perf_counter() - began)

    submitter = asyncio.ensure_future(submit())
    current: ShardFile | None = None
    began = time.perf_counter()
    try:
        while (item := await queue.get()) is not None:
            shard, start, stop, future = item
            try:
                data = await future
            except BrokenProcessPool:
                raise WorkerError(
                    f"a worker process died while rendering {shard.name} (split {shard.split}, plan positions "
                    f"{start}-{stop}; killed by the system, out of memory?); completed shards are kept, "
                    "rerun the same command to resume"
                ) from None
            if current is None:
                current = await ShardFile.create(dst / shard.name)
                began = time.perf_counter()
            await current.append(data, stop - start)
            reporter.advance(stop - start)
            if faults.ACTIVE:
                # Crash-point tests need the state at this point to be exact: earlier shards settled.
                await asyncio.gather(*publishing)
                faults.point("append")
            if stop == shard.stop:
                await current.close()
                publishing.append(asyncio.ensure_future(publish(current, began)))
                current = None
        await submitter
        await asyncio.gather(*publishing)
    except BaseException:
        submitter.cancel()
        with contextlib.suppress(BaseException):
            await submitter  # it may have failed too (submitting to a broken pool): retrieve that
        # Shards already complete are still published (hashed, renamed, journaled): a failure in a
        # later shard, or a stop signal, must not cost finished work. A publish that fails is dropped.
        await asyncio.gather(*publishing, return_exceptions=True)
        pending = unqueued
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                pending.append(item[3])
        for future in pending:
            future.cancel()
        if current is not None:
            await current.discard()
        raise
    return written
