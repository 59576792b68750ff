"""The orchestrator: read -> store -> plan -> render (workers) -> write -> index.

An asyncio event loop submits small task descriptions to any ``concurrent.futures.Executor``
(a process pool here, a Dask cluster's executor elsewhere) with ``loop.run_in_executor``, keeps a
bounded number in flight through an ``asyncio.Queue`` of futures, and appends finished chunks to
their shard in plan order. The parent never touches a single image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, manifest
from .errors import InputError, OptionsChangedError, UsageError
from .plan import Shard, SplitPlan, plan_path, plan_split
from .read import SPLITS, SourceFile, discover
from .render import RenderOptions
from .store import ClassRecord, IngestTask, ingest
from .worker import LAYOUT_FILE, ChunkTask, init_worker, render_chunk
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
    read ``dst``; by default a process pool of ``procs`` workers (all cores) is created.
    """
    options.check()
    if chunk_size < 1:
        raise UsageError(f"chunk size must be at least 1, got {chunk_size}")
    procs = procs or os.cpu_count() or 1
    reporter = reporter or Reporter()
    src, dst = Path(src), Path(dst)
    sources = discover(src)
    state = prepare_output(dst, sources, options, overwrite)
    started = time.perf_counter()
    own_executor = executor is None
    if executor is None:
        executor = ProcessPoolExecutor(procs, mp_context=_mp_context(), initializer=init_worker)
        _enlarge_result_pipe(executor)
    try:
        result = asyncio.run(_build(sources, dst, state, options, executor, 2 * procs, chunk_size, reporter))
    finally:
        if own_executor:
            executor.shutdown(wait=True, cancel_futures=True)
    result.seconds = time.perf_counter() - started
    return result


def _enlarge_result_pipe(executor: ProcessPoolExecutor, size: int = 1 << 20) -> None:
    """Let a worker hand over a whole chunk's bytes (~2 MB at 256 px) in a couple of writes.

    Results travel through one pipe, 64 KB by default on Linux: each chunk then takes ~30 refills,
    and every refill blocks the worker until the parent's reader thread runs. Best effort: other
    platforms, or a refused size, keep the default.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        return
    queue = getattr(executor, "_result_queue", None)
    for conn in (getattr(queue, "_reader", None), getattr(queue, "_writer", None)):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, size)


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork is unsafe once the parent has threads (aiofiles uses a thread pool); forkserver is
    # cheap and safe on POSIX, spawn is the portable fallback.
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The server imports the worker's modules (numpy, OpenCV) once; every worker forked from it
    # starts warm instead of paying those imports itself (with 128 workers, 128 times).
    context.set_forkserver_preload(["shardgen.worker"])
    return context


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
    elif previous is None and dst.exists() and any(dst.iterdir()):
        raise UsageError(
            "output folder is not empty and holds no shardgen build; choose an empty folder or pass --overwrite",
            dst,
        )
    try:
        os.makedirs(state / "store", exist_ok=True)
        atomic.write_json(state / BUILD_FILE, identity)
    except OSError as error:
        raise output_error(error, state) from None
    return state


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
    """Remove what a shardgen build writes in ``dst`` (shards, indexes, state), nothing else."""
    if not dst.is_dir():
        return
    for path in dst.iterdir():
        name = path.name
        if name == STATE_DIR:
            shutil.rmtree(path)
        elif name.endswith((".tar", ".tar" + PARTIAL_SUFFIX, ".wids.json")) or name == manifest.MANIFEST:
            path.unlink()


async def _build(sources, dst, state, options, executor, inflight, chunk_size, reporter):
    loop = asyncio.get_running_loop()
    records, skipped_files = await _ingest_all(sources, state, options, executor, loop, reporter)
    kept = [(source, record) for source, record in zip(sources, records) if record is not None]
    splits = _splits_present(kept, options)
    layout = {
        "classes": [record.category for _, record in kept],
        "sources": [source.name for source, _ in kept],
        "store_ids": [sources.index(source) for source, _ in kept],
        "counts": {split: [record.counts.get(split, 0) for _, record in kept] for split in splits},
    }
    atomic.write_json(state / LAYOUT_FILE, layout)
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
    for split, plan in plans.items():
        atomic.write_npy(plan_path(state, split), plan.order)

    journal = Journal(state / "journal.jsonl")
    done = _reusable_shards(dst, plans, journal)
    for partial in dst.glob("*" + PARTIAL_SUFFIX):
        partial.unlink()
    todo = [shard for plan in plans.values() for shard in plan.shards if shard.name not in done]
    reporter.stage("render", sum(shard.count for shard in todo))
    written = await _render_shards(todo, dst, state, options, executor, loop, inflight, journal, reporter)
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
    return BuildResult(dst, result_manifest, sum(s.count for s in todo), len(written), len(done) - len(written), 0.0)


def _splits_present(kept: list[tuple[SourceFile, ClassRecord]], options: BuildOptions) -> list[str]:
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
            record = await loop.run_in_executor(executor, ingest, task)
        except InputError as error:
            if options.on_error != "skip":
                raise
            reporter.warn(f"skipped {error}")
            reporter.skip(1)
            return {"source": source.name, "reason": error.message}
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
    shards: list[Shard], dst, state, options, executor, loop, inflight, journal, reporter
) -> list[ShardRecord]:
    """Render ``shards`` chunk by chunk, at most ``inflight`` chunks submitted at once."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=inflight)

    async def submit() -> None:
        for shard in shards:
            for start, stop in shard.chunks():
                task = ChunkTask(state, shard.split, start, stop, options.render, options.seed)
                future = loop.run_in_executor(executor, render_chunk, task)
                await queue.put((shard, start, stop, future))  # waits while `inflight` chunks are out
        await queue.put(None)

    written: list[ShardRecord] = []
    publishing: list[asyncio.Future] = []

    async def publish(shard_file: ShardFile, began: float) -> None:
        # Hash on a worker (the parent does no per-byte work), then rename and journal here.
        digests = await loop.run_in_executor(executor, file_digests, shard_file.partial)
        record = await shard_file.publish(digests)
        journal.append(record)
        written.append(record)
        reporter.shard_done(record, time.perf_counter() - began)

    submitter = asyncio.ensure_future(submit())
    current: ShardFile | None = None
    began = time.perf_counter()
    try:
        while (item := await queue.get()) is not None:
            shard, start, stop, future = item
            data = await future
            if current is None:
                current = await ShardFile.create(dst / shard.name)
                began = time.perf_counter()
            await current.append(data, stop - start)
            reporter.advance(stop - start)
            if stop == shard.stop:
                await current.close()
                publishing.append(asyncio.ensure_future(publish(current, began)))
                current = None
        await submitter
        await asyncio.gather(*publishing)
    except BaseException:
        submitter.cancel()
        for task in publishing:
            task.cancel()
        await asyncio.gather(*publishing, return_exceptions=True)
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                item[3].cancel()
        if current is not None:
            await current.discard()
        raise
    return written


@dataclass
class BuildPlan:
    """What a build would produce, worked out without rendering a shard or writing anything."""

    src: Path
    classes: list[str]
    counts: dict[str, int]  # split -> samples
    shard_counts: dict[str, list[int]]  # split -> samples in each shard
    estimated_bytes: dict[str, int]  # split -> estimated size of its shards
    bytes_per_sample: float  # mean size of one sample's tar members, measured on rendered sketches
    sampled: int  # how many sketches were rendered to measure it
    skipped: list[dict]
    skipped_files: list[dict]

    @property
    def images(self) -> int:
        return sum(self.counts.values())


def plan_build(
    src: Path, options: BuildOptions = BuildOptions(), *, sample: int = 64, reporter: Reporter | None = None
) -> BuildPlan:
    """Read and validate the inputs as ``build`` would, and say what it would write (``--dry-run``).

    Nothing is rendered into shards and nothing is written. The output size is an estimate: up to
    ``sample`` valid sketches, spread over the classes in proportion to their counts, are rendered and encoded
    in this process with the build's options, and their mean tar-member size is scaled up.
    Reading takes about as long as a build's ingest stage, in one process.
    """
    from . import tar
    from .errors import SketchError
    from .plan import shard_bounds
    from .read import ADAPTERS, as_sketch_array, validate_sketch
    from .render import color_seed, encode_image, render_sketch
    from .worker import sample_key

    options.check()
    reporter = reporter or Reporter()
    sources = discover(Path(src))
    wanted = tuple(options.splits or SPLITS)
    kept, skipped, skipped_files, reservoirs = [], [], [], []
    reporter.stage("read", len(sources))
    for source in sources:
        try:
            by_split = ADAPTERS[source.path.suffix](source.path, wanted)
        except InputError as error:
            if options.on_error != "skip":
                raise
            reporter.warn(f"skipped {error}")
            reporter.skip(1)
            skipped_files.append({"source": source.name, "reason": error.message})
            reporter.advance(1)
            continue
        record = ClassRecord(source.category, source.name, "")
        valid = []  # (split, index, sketch) candidates for the size sample
        for split in wanted:
            sketches = by_split.get(split)
            if sketches is None:
                continue
            if options.limit is not None:
                sketches = sketches[: options.limit]
            count = 0
            for index, raw in enumerate(sketches):
                sketch = as_sketch_array(raw)
                reason = validate_sketch(sketch)
                if reason is not None:
                    if options.on_error == "fail":
                        raise SketchError(reason, source.name, split, index)
                    record.skipped.append({"source": source.name, "split": split, "index": index, "reason": reason})
                    continue
                count += 1
                valid.append((split, index, sketch))
            record.counts[split] = count
        if record.skipped:
            reporter.warn(f"{source.name}: skipped {len(record.skipped)} invalid sketch(es)")
            reporter.skip(len(record.skipped))
        skipped.extend(record.skipped)
        # Keep at most `sample` evenly spaced candidates per class, so memory stays small.
        reservoirs.append(valid[:: max(1, len(valid) // max(sample, 1))][:sample])
        kept.append((source, record))
        reporter.advance(1)
    splits = _splits_present(kept, options)
    picked = _proportional_sample(
        [[item for item in reservoir if item[0] in splits] for reservoir in reservoirs],
        [sum(record.counts.get(split, 0) for split in splits) for _, record in kept],
        sample,
    )
    classes = [record.category for _, record in kept]
    sizes = []
    for class_index, split, index, sketch in picked:
        key = sample_key(split, class_index, index)
        image = encode_image(render_sketch(sketch, options.render, color_seed(options.seed, key)), options.render)
        meta = {"category": classes[class_index], "class": class_index, "split": split, "index": index}
        meta["source"] = kept[class_index][0].name
        members = (
            tar.member(f"{key}.{options.render.extension}", image),
            tar.member(f"{key}.cls", b"%d" % class_index),
            tar.member(f"{key}.json", json.dumps(meta, separators=(",", ":")).encode()),
        )
        sizes.append(sum(map(len, members)))
    per_sample = sum(sizes) / len(sizes) if sizes else 0.0
    counts = {split: sum(record.counts.get(split, 0) for _, record in kept) for split in splits}
    shard_counts = {
        split: [stop - start for start, stop in shard_bounds(counts[split], options.shard_size)] for split in splits
    }
    estimated = {}
    for split, shards in shard_counts.items():
        body = [round(n * per_sample) for n in shards]
        estimated[split] = sum(b + len(tar.end_of_archive(b)) for b in body)
    return BuildPlan(
        Path(src), classes, counts, shard_counts, estimated, per_sample, len(sizes), skipped, skipped_files
    )


def _proportional_sample(reservoirs: list[list], counts: list[int], sample: int) -> list[tuple]:
    """``(class index, *item)`` picks from each class's candidates, as many as its share of ``counts``.

    Small classes then weigh in the size estimate as little as they weigh in the output.
    """
    total = sum(counts)
    if total == 0 or sample <= 0:
        return []
    shares = [sample * count / total for count in counts]
    quotas = [int(share) for share in shares]
    by_remainder = sorted(range(len(counts)), key=lambda i: shares[i] - quotas[i], reverse=True)
    for i in by_remainder[: sample - sum(quotas)]:
        quotas[i] += 1
    picked = []
    for class_index, (reservoir, quota) in enumerate(zip(reservoirs, quotas)):
        if quota and reservoir:
            picked.extend((class_index, *item) for item in reservoir[:: max(1, len(reservoir) // quota)][:quota])
    return picked
