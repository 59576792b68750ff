"""Running the build's tasks on an executor: our own process pool, submitting without cancellation
races, and stopping cleanly on SIGINT/SIGTERM. The orchestrator (``orchestrate``) uses any
``concurrent.futures.Executor``; only the pool it creates itself gets the extras here.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from types import FrameType
from typing import Any

from .errors import Interrupted

# What signal.signal returns and takes back: a function, SIG_DFL or SIG_IGN, or None (set outside Python).
SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

STOP_GRACE = 2.0  # seconds busy workers get to finish their task when a build stops early
MANAGER_WAIT = 10.0  # seconds a killing stop waits for the pool's manager thread, once every worker is killed


# What the fork server imports before it forks a worker: one thread per native library, then the
# worker's modules (numpy, OpenCV).
FORK_SERVER_PRELOAD = ["shardgen.singlethread", "shardgen.worker"]


def new_pool(procs: int) -> ProcessPoolExecutor:
    """A process pool of ``procs`` workers started from a warm fork server; they exit if the build dies."""
    from .worker import init_worker  # here, not at the top: start_fork_server must not wait for OpenCV

    # Results are small records (see ``fragments``): the result pipe's default size is plenty, and
    # a message that fits one pipe write cannot be torn by a worker killed while sending it.
    return ProcessPoolExecutor(procs, mp_context=mp_context(), initializer=init_worker, initargs=(os.getpid(),))


class StopOnSignals:
    """Turn SIGINT and SIGTERM into a clean stop of the running build, then :class:`Interrupted`.

    The first signal cancels the build's main task, so every ``finally`` and cleanup runs (the
    partial shard is discarded, pending chunks are cancelled). The same stop often arrives twice
    at once (to the process group and forwarded by a wrapper such as ``timeout``): repeats within
    a second are ignored. A later one (Ctrl-C pressed again) exits at once; completed shards are
    safe and a rerun removes what is left. Signal handlers can only be set from the main thread;
    elsewhere this does nothing.

    Outside the task the handler only records the signal, and the build stops at the next
    :meth:`check` or :meth:`run`. It never raises: an exception raised from a signal handler lands
    wherever the main thread is, such as a multiprocessing finalizer or the pool's shutdown, which
    then prints a traceback or is left half done.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._first_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._previous: dict[int, SignalHandler] = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            if time.monotonic() - self._first_at < 1.0:
                return
            os._exit(128 + self.received)  # raising here could abort the cleanup half-way and hang
        self.received, self._first_at = signum, time.monotonic()
        task = self._task
        if task is not None and not task.done() and self._loop is not None:
            self._loop.call_soon_threadsafe(task.cancel)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal has arrived."""
        if self.received is not None:
            raise Interrupted(self.received)

    async def run(self, coroutine):
        """Await ``coroutine`` as the cancellable main task of this build; ``None`` if a signal stopped
        it, or had arrived before (then ``coroutine`` is not started).

        The caller raises :class:`Interrupted` once the loop is closed: a ``KeyboardInterrupt``
        raised inside a task escapes the event loop before its cleanup.
        """
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            if self.received is not None:  # it came before there was a task to cancel
                coroutine.close()
                return None
            return await coroutine
        except asyncio.CancelledError:
            if self.received is not None:
                return None
            raise
        finally:
            self._task = None


def stop_pool(pool: Executor, kill: bool) -> None:
    """Shut our own pool down; after a failure or an interrupt, without waiting long for busy workers.

    Workers get a grace period to finish what they hold (at most two tasks each are queued); one
    still busy after that (seconds into a large file or chunk whose result nobody will use) is
    killed, which is safe because workers only ever write through atomic renames, and the pool then
    fails what is left. Futures are never cancelled here: a stop signal to the process group kills
    workers at the same moment, and cancelling while the pool's manager thread fails the futures
    of dead workers crashes that thread (Python 3.11), after which the shutdown waits forever.

    A broken pool needs ``kill`` too. When a worker dies, the manager thread terminates the others
    and joins them all; a worker the pool was starting at that moment misses the terminate, idles,
    and the join waits for it forever. That happens after a stop signal to the group: it kills the
    fork server, and the pool's next start launches a new one, whose workers no signal reached.

    Killing ends with the manager thread: left running, it races with the interpreter's exit,
    which then prints a traceback (Python 3.11: ``_python_exit`` wakes it through a pipe it is
    closing).
    """
    if not kill:
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # shutdown(wait=False) forgets it
    pool.shutdown(wait=False)
    deadline = time.monotonic() + STOP_GRACE
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
    if manager is not None:
        manager.join(MANAGER_WAIT)  # it only waits for the workers now: dead, or dying


def mp_context() -> multiprocessing.context.BaseContext:
    # fork is unsafe once the parent has threads (the pool's own, a notebook's); forkserver is
    # cheap and safe on POSIX, spawn is the portable fallback.
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # The server imports the worker's modules (numpy, OpenCV) once; every worker forked from it
    # starts warm instead of paying those imports itself (with 128 workers, 128 times).
    context.set_forkserver_preload(FORK_SERVER_PRELOAD)
    return context


def start_fork_server() -> None:
    """Start the fork server of :func:`new_pool` now, in the background, if it is not running yet.

    It spends ~0.2 s importing numpy and OpenCV before it can fork a worker. Started first thing,
    that overlaps with the build process's own imports and checks instead of following them.

    The server starts with SIGINT blocked (see :func:`sigint_held`), as multiprocessing starts its
    resource tracker: a Ctrl-C to the process group during those imports, before the server's own
    code ignores SIGINT, would otherwise kill it with a KeyboardInterrupt traceback. It stays
    blocked in the server and in the workers it forks, which ignore SIGINT anyway.
    """
    if mp_context().get_start_method() == "forkserver":
        import multiprocessing.forkserver  # POSIX only
        from multiprocessing import resource_tracker

        # First, outside the hold: starting the tracker unblocks SIGINT in this thread when it is done.
        resource_tracker.ensure_running()
        with sigint_held():
            multiprocessing.forkserver.ensure_running()


@contextlib.contextmanager
def sigint_held():
    """Block SIGINT in this thread for the block: processes started meanwhile inherit the blocked
    signal (through exec too), while one sent to this process stays pending and is delivered when
    the block ends, to whatever handler is set then. Ignoring SIGINT instead would lose it."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def drop(future: asyncio.Future) -> None:
    """Give up on a task's future nobody will wait for; a failure it already holds counts as seen
    (no "exception never retrieved" warning). The task itself runs on (see :func:`submit_task`)."""
    if future.done() and not future.cancelled():
        future.exception()
    future.cancel()


def submit_task(loop: asyncio.AbstractEventLoop, executor: Executor, fn, *args) -> asyncio.Future:
    """Like ``loop.run_in_executor``, but cancelling the returned future leaves the task alone.

    Work that is not needed any more is cancelled by shutting our own pool down. Cancelling
    process-pool futures from here instead races with the pool's manager thread when a worker dies
    (Python 3.11 then crashes that thread and the shutdown hangs).
    """
    done = loop.create_future()

    def copy(source) -> None:
        if done.cancelled():
            return
        if source.cancelled():
            done.cancel()
        elif source.exception() is not None:
            done.set_exception(source.exception())
        else:
            done.set_result(source.result())

    def on_done(source) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(copy, source)

    executor.submit(fn, *args).add_done_callback(on_done)
    return done
