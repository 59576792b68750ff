"""The render stage's writer: chunks rendered in plan order, each shard sealed and journaled once complete.

A submitter coroutine submits every chunk of the plan to the executor and puts its future on a
bounded ``asyncio.Queue`` (at most ``inflight`` chunks are out at once). The writer, the build's
own task, follows the queue in plan order; once a shard's last chunk is in, it has the shard
sealed on a worker (beside the chunks that follow) and then journals it. A shard rendered whole
(see ``orchestrate.whole_shards``) is one task that also seals it: it is journaled once that task
is done. Workers write every byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from . import faults
from .errors import OutputError, WorkerError
from .executor import drop
from .fragments import PARTS_DIR, fragment_path, seal_shard
from .objectstore import seal_and_upload
from .output import shard_folder
from .plan import Shard
from .worker import ChunkTask, render_chunk, render_shard
from .write import ShardRecord, output_error

if TYPE_CHECKING:
    from .orchestrate import Build


class ShardWriter:
    """The render stage of ``build`` for ``shards`` (see the module docstring); call :meth:`run`
    once, from the build's task. ``build_id`` names the layout the chunks are rendered from; the
    shards named in ``whole`` are rendered whole, one task each."""

    def __init__(self, build: Build, shards: list[Shard], build_id: str, whole: frozenset[str] = frozenset()) -> None:
        self.build, self.shards, self.build_id, self.whole = build, shards, build_id, whole
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=build.inflight)
        writer = asyncio.current_task()
        assert writer is not None  # a coroutine of the build's event loop
        self.writer = writer
        self.failures: list[BaseException] = []
        self.stopping = False
        self.sealing: list[asyncio.Future] = []
        self.written: list[ShardRecord] = []
        self.submitter = asyncio.ensure_future(self._submit())
        self.submitter.add_done_callback(self._stop_writer)

    async def run(self) -> list[ShardRecord]:
        """Render and seal every shard; journal what was sealed."""
        try:
            await self._follow()
            await self.submitter
            await asyncio.gather(*self.sealing)
        except BaseException as error:
            await self._wind_down()
            if self.failures and isinstance(error, asyncio.CancelledError):
                raise self.failures[0] from None
            raise
        return self.written

    def _stop_writer(self, task: asyncio.Future) -> None:
        # A seal that could not write (disk full) stops the build now, not after every chunk; a
        # submitter that failed would leave the writer waiting for chunks that never come.
        error = None if self.stopping or self.failures or task.cancelled() else task.exception()
        if error is None:
            return
        if task is self.submitter or isinstance(error, OutputError):
            self.failures.append(error)
            self.writer.cancel()

    async def _submit(self) -> None:
        """Submit every chunk in plan order, as fast as the queue takes them; then say the end."""
        for position, shard in enumerate(self.shards):
            # Its split's plan must be on disk before a worker reads it (see Build.plan); shielded:
            # a stop cancels this loop, not the thread writing the plan.
            await asyncio.shield(self.build.plans_written[shard.split])
            whole = shard.name in self.whole
            render, ranges = (render_shard, [(shard.start, shard.stop)]) if whole else (render_chunk, shard.chunks())
            for start, stop in ranges:
                try:
                    future = self.build.submit(render, self._chunk_task(shard, start, stop, position))
                except BrokenProcessPool as error:  # the writer reports it, naming this chunk
                    future = asyncio.get_running_loop().create_future()
                    future.set_exception(error)
                try:
                    await self.queue.put((shard, position, start, stop, future))  # waits while `inflight` are out
                except BaseException:
                    drop(future)  # stopped before queueing it: nobody else will look at it
                    raise
        await self.queue.put(None)

    async def _follow(self) -> None:
        """Wait for every chunk in plan order; start a shard's seal once its last chunk is in."""
        began: dict[str, float] = {}
        while (item := await self.queue.get()) is not None:
            shard, position, start, stop, future = item
            began.setdefault(shard.name, time.perf_counter())
            result = await _chunk_done(shard, start, stop, future)
            self.build.reporter.advance(stop - start)
            whole = shard.name in self.whole
            if faults.ACTIVE and not whole:
                faults.point("append")
            if stop == shard.stop:
                sealed = result if whole else None  # a whole shard's task sealed it: its size and sha256
                self.sealing.append(asyncio.ensure_future(self._seal(shard, position, began.pop(shard.name), sealed)))
                self.sealing[-1].add_done_callback(self._stop_writer)

    async def _seal(self, shard: Shard, position: int, began: float, sealed: tuple[int, str] | None) -> None:
        """Seal ``shard`` (the ``position``-th of this run) unless its task did, then journal it: it is done."""
        build = self.build
        if sealed is None:
            record = await self._seal_on_worker(shard, position)
        else:
            record = ShardRecord(shard.name, shard.count, *sealed)
        if faults.ACTIVE:
            faults.point("journal")
        # In a thread: an fsync (or, on object storage, a PUT) must not stall the loop that keeps
        # every worker fed.
        await asyncio.to_thread(build.journal.append, record)
        build.tally.sealed.add(record.file)
        build.tally.images += record.count
        self.written.append(record)
        build.reporter.shard_done(record, time.perf_counter() - began)

    async def _seal_on_worker(self, shard: Shard, position: int) -> ShardRecord:
        """Have ``shard``'s fragments joined into the shard on a worker (and uploaded, DST a URL)."""
        build = self.build
        path = shard_folder(build.output, build.state) / shard.name
        fragments = [fragment_path(build.state, shard.name, start) for start, _ in shard.chunks()]
        # With DST a URL the same worker uploads the sealed shard: only then is its object visible.
        sealer, upload_to = (seal_shard, ()) if build.output.is_local else (seal_and_upload, (build.output,))
        try:
            size, sha256 = await build.submit(sealer, fragments, path, position, *upload_to, build.options.dali_index)
        except BrokenProcessPool:
            raise WorkerError(f"a worker process died while sealing {shard.name}") from None
        except OSError as error:
            raise output_error(error, Path(error.filename or path)) from None
        return ShardRecord(shard.name, shard.count, size, sha256)

    def _chunk_task(self, shard: Shard, start: int, stop: int, position: int) -> ChunkTask:
        build = self.build
        if shard.name in self.whole:
            target = shard_folder(build.output, build.state) / shard.name
        else:
            target = fragment_path(build.state, shard.name, start)
        return ChunkTask(
            state_dir=build.state,
            build_id=self.build_id,
            split=shard.split,
            start=start,
            stop=stop,
            options=build.options.render,
            seed=build.options.seed,
            fragment=target,
            list_members=build.options.dali_index,
            shard_index=position,
        )

    async def _wind_down(self) -> None:
        """After a failure or a stop signal: stop submitting, let complete shards be sealed, drop the rest."""
        self.stopping = True
        self.submitter.cancel()
        with contextlib.suppress(BaseException):
            await self.submitter
        # Shards already complete are still sealed and journaled: a failure in a later shard, or a
        # stop signal, must not cost finished work. A seal that fails is dropped.
        await asyncio.gather(*self.sealing, return_exceptions=True)
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not None:
                drop(item[-1])


async def _chunk_done(shard: Shard, start: int, stop: int, future: asyncio.Future):
    """Wait for one chunk's result; a dead worker or a failed write becomes a one-line error."""
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
