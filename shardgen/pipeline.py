"""The build's entry point: ``build(src, dst, options)``, on a process pool of its own (retried once
in a fresh pool if a worker dies), a caller's executor, or a Dask cluster; SIGINT and SIGTERM stop
it cleanly, and a failed run leaves no partial file. The stages themselves are ``orchestrate``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from .cluster import DaskExecutor, connect
from .errors import Interrupted, UsageError, WorkerError
from .executor import StopOnSignals, new_pool, start_fork_server, stop_pool
from .formats.ingest import check_sources
from .location import Location, is_url
from .mainguard import check_main_guard
from .objectstore import default_work_dir
from .options import BuildOptions, RunOptions
from .orchestrate import Build, Tally
from .output import (
    STATE_DIR,
    locked,
    owned_files,
    prepare_output,
    remove_partials,
    remove_unfinished,
    shard_folder,
)
from .progress import BuildResult, Reporter
from .read import SourceFile, discover

SHARED = "every worker needs it at the same path, on a shared filesystem"


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
    RunOptions(procs=procs, chunk_size=chunk_size).check()
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            executor = _connect(scheduler, executor, stack)
            procs = procs or executor.threads
            # workers resolve relative paths against their own folder: give them absolute ones
            src, dst = (target if is_url(target) else Path(target).absolute() for target in (src, dst))
            work_dir = Path(work_dir).absolute() if work_dir else None
        if executor is None:
            check_main_guard()  # before DST is touched: an unguarded script would re-run this in every worker
            start_fork_server()  # its imports overlap with the checks below
        procs = procs or os.cpu_count() or 1
        reporter = reporter or Reporter()
        sources, output, state = _locate(src, dst, storage_options, work_dir)
        check_sources(sources, options.drawings, options.render.color)
        signals = stack.enter_context(StopOnSignals())
        stack.enter_context(locked(output, state))
        prepare_output(output, state, sources, options, overwrite, reporter.warn)
        if isinstance(executor, DaskExecutor):
            _check_reach(executor, output, state)
        signals.check()  # a stop during the checks above: no pool to start
        started = time.perf_counter()
        build_on = functools.partial(
            Build, output, state, options, reporter=reporter, inflight=2 * procs, chunk_size=chunk_size, tally=Tally()
        )
        result = _run_with_retry(build_on, sources, signals, executor, procs, reporter)
        result.seconds = time.perf_counter() - started
        return result


def _connect(scheduler: str, executor: Executor | None, stack: contextlib.ExitStack) -> DaskExecutor:
    """An executor on the Dask cluster at ``scheduler``, shut down when ``stack`` closes."""
    if executor is not None:
        raise UsageError("pass either an executor or a Dask scheduler address, not both")
    dask = connect(scheduler)
    stack.callback(dask.shutdown, cancel_futures=True)
    return dask


def _locate(
    src: Path | str, dst: Path | str, storage_options: dict | None, work_dir: Path | str | None
) -> tuple[list[SourceFile], Location, Path]:
    """The input files, DST, and the build's state folder: in DST, or for a URL the local ``work_dir``."""
    sources = discover(src if is_url(src) else Path(src), storage_options)
    output = Location.of(dst, storage_options)
    state = output.path(STATE_DIR) if output.is_local else Path(work_dir or default_work_dir(output.root))
    return sources, output, state


def _check_reach(dask: DaskExecutor, output: Location, state: Path) -> None:
    """Fail at once, naming the folder, unless every Dask worker can read and write the work folder
    and, DST a URL, DST itself."""
    dask.check_reach(Location.of(state), SHARED if output.is_local else SHARED + " (pass --work-dir)")
    if not output.is_local:
        dask.check_reach(output.child(STATE_DIR), "every worker needs DST's credentials and endpoint")


def _run_with_retry(
    build_on: Callable[[Executor], Build],
    sources: list[SourceFile],
    signals: StopOnSignals,
    executor: Executor | None,
    procs: int,
    reporter: Reporter,
) -> BuildResult:
    """Run ``build_on(executor)``; with no executor given, in a pool of ``procs`` workers of our
    own, and once more in a fresh pool if a worker of the first dies (the rerun resumes)."""
    if executor is not None:
        return _attempt(build_on(executor), sources, signals, own_pool=False)
    try:
        return _attempt(build_on(new_pool(procs)), sources, signals, own_pool=True)
    except WorkerError as error:
        reporter.warn(f"{error}; retrying once in a fresh worker pool")
    return _attempt(build_on(new_pool(procs)), sources, signals, own_pool=True)


def _attempt(job: Build, sources: list[SourceFile], signals: StopOnSignals, own_pool: bool) -> BuildResult:
    """Run ``job`` to its end; a stop signal ends it with :class:`Interrupted`. After a failure
    nothing partial is left, and a pool of our own is stopped (killing workers still busy)."""
    failed = True
    try:
        result = _run_to_completion(signals.run(job.run(sources)))
        if result is None:
            raise Interrupted(signals.received or signal.SIGINT)
        failed = False
        return result
    except Exception:
        # A stop signal to the group also kills workers, or reaches the fork server: starting a
        # worker then fails (EOFError), or a file operation is cut short. The signal is the cause.
        if signals.received is not None:
            raise Interrupted(signals.received) from None
        raise
    finally:
        if own_pool:
            stop_pool(job.executor, kill=failed)
        if failed:
            _discard_partials(job.output, job.state)


def _discard_partials(output: Location, state: Path) -> None:
    """Delete the partial shards, fragment files and byte ranges not yet joined that a failed run left."""
    # Cancelled file operations finish in threads after their coroutine gave up; the loop has
    # joined those threads now, so no partial shard can reappear.
    with contextlib.suppress(OSError):
        remove_partials(shard_folder(output, state), owned_files(output, state))
    remove_unfinished(state)


def _run_to_completion(coroutine):
    """``asyncio.run``, also from code that already runs an event loop (a Jupyter notebook, an
    async training script): there the build gets a loop of its own in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1, thread_name_prefix="shardgen-build") as thread:
        return thread.submit(asyncio.run, coroutine).result()
