"""Running a build's tasks on a Dask cluster (``--scheduler tcp://host:8786``).

The orchestrator takes any ``concurrent.futures.Executor``; :class:`DaskExecutor` is one, built on
``Client.get_executor(pure=False)``. What differs from a local process pool is handled here:

- Dask deduplicates calls it believes pure: ``pure=False`` makes every submission a task of its own.
- Dask worker processes are daemonic and cannot start processes: no task of ours starts any.
- A task whose worker dies is rerun on another (up to ``distributed.scheduler.allowed-failures``,
  3 by default), so every write a task makes is idempotent and atomic; past that the build fails
  with a :class:`WorkerError` and a rerun resumes.
- Workers run the tasks in their own processes, so they must reach the build's state folder (the
  packed stroke store, the plan) at the same path: a shared filesystem, or object storage.
  :meth:`DaskExecutor.check_reach` checks that at start.

Dask is an optional extra (``pip install 'shardgen[dask]'``); this module imports it only when a
build connects to a scheduler.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Executor, Future, InvalidStateError

from .errors import OutputError, ShardgenError, UsageError, WorkerError, reason
from .location import Location

CONNECT_TIMEOUT = 10  # seconds to reach the scheduler before giving up
CLOSE_TIMEOUT = 5  # seconds to say goodbye to the scheduler (it may be the part that failed)
PROBE_PREFIX = ".probe-"
RESUME = "completed shards are kept, rerun to resume"
LOST = f"the Dask cluster dropped a task (is its scheduler still running?); {RESUME}"
WATCH_EVERY = 0.5  # seconds between checks that the client is still connected


def connect(address: str) -> DaskExecutor:
    """An executor that runs tasks on the Dask cluster whose scheduler listens at ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask's distributed package: pip install 'shardgen[dask]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise UsageError(f"cannot connect to the Dask scheduler at {address}: {reason(error)}") from None
    executor = DaskExecutor(client)
    if executor.threads == 0:
        executor.shutdown()
        raise UsageError(f"the Dask scheduler at {address} has no workers; start some with `dask worker {address}`")
    return executor


class DaskExecutor(Executor):
    """``Client.get_executor(pure=False)`` whose futures fail with shardgen's errors, not Dask's."""

    def __init__(self, client) -> None:
        self.client = client
        self._executor = client.get_executor(pure=False)
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._fail_pending_when_lost, name="shardgen-dask-watch", daemon=True).start()

    @property
    def threads(self) -> int:
        """Task slots of the cluster right now (the sum of its workers' threads)."""
        return sum(self.client.nthreads().values())

    def submit(self, fn, /, *args, **kwargs) -> Future:
        outer: Future = Future()
        if self.client.status != "running":  # reconnecting or closed: the task would never run
            outer.set_exception(WorkerError(LOST))
            return outer
        with self._lock:
            self._pending.add(outer)
        # A readable task name on the dashboard; unique, as pure=False would make it anyway.
        key = f"{getattr(fn, '__name__', 'task')}-{uuid.uuid4().hex}"
        inner = self._executor.submit(run_task, fn, *args, key=key, **kwargs)

        def copy(done: Future) -> None:
            error = None if done.cancelled() else done.exception()
            if done.cancelled():  # we never cancel a task the build still waits for: the cluster did
                _settle(outer, error=WorkerError(LOST))
            elif error is not None:
                _settle(outer, error=translate_error(error))
            else:
                _settle(outer, result=done.result())
            with self._lock:
                self._pending.discard(outer)

        inner.add_done_callback(copy)
        return outer

    def _fail_pending_when_lost(self) -> None:
        """Fail what is still pending once the client has lost its scheduler for good.

        Dask cancels the tasks it knows of when the connection drops, but a task submitted while it
        reconnects, or once the client has given up and closed, would wait forever, and so would
        the build waiting for it.
        """
        while not self._closed.wait(WATCH_EVERY):
            if self.client.status in ("closing", "closed", "failed"):
                with self._lock:
                    pending, self._pending = self._pending, set()
                for future in pending:
                    _settle(future, error=WorkerError(LOST))
                return

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Disconnect; with ``cancel_futures``, without waiting for what is still queued.

        Closing the client is what cancels its queued tasks (the scheduler forgets tasks no client
        wants). Cancelling them one by one first would be a call to the scheduler, which hangs for
        the connect timeout when the scheduler is what failed.
        """
        if wait and not cancel_futures:
            self._executor.shutdown(wait=True)
        self._closed.set()
        self.client.close(timeout=CLOSE_TIMEOUT)

    def check_reach(self, folder: Location, needs: str) -> None:
        """Fail with one line naming ``folder`` unless every worker can read what we write there and
        write there too; ``needs`` says what a worker needs for that."""
        token = uuid.uuid4().hex
        name = PROBE_PREFIX + token
        folder.write_atomic(name, token.encode())
        try:
            answers = self.client.run(probe, folder, name, token)
        finally:
            folder.delete(name)
        for worker, problem in sorted(answers.items()):
            if problem is not None:
                raise OutputError(
                    f"Dask worker {worker} cannot reach the build's state folder ({problem}); {needs}", folder.root
                )


def _settle(future: Future, *, result=None, error: BaseException | None = None) -> None:
    """Give ``future`` its outcome unless the watchdog or Dask already did (whichever came first)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


def probe(folder: Location, name: str, token: str) -> str | None:
    """Runs on each worker: ``None`` if it reads back the token the build wrote and can write
    there too (workers write the store), else what went wrong."""
    try:
        if folder.read_bytes(name) != token.encode():
            return "a different folder is at that path there"
        answer = f"{name}-{uuid.uuid4().hex}"
        folder.write_atomic(answer, b"")
        folder.delete(answer)
    except FileNotFoundError:
        return "no such file or folder there"
    except Exception as error:  # noqa: BLE001 - whatever the reason, report it rather than fail the worker
        return reason(error)
    return None


_prepared = False


def run_task(fn, *args, **kwargs):
    """Runs on a worker: set the process up for rendering once, then run ``fn``.

    The process-pool initializer does not run on Dask workers (nannies start them); workers render
    with their own threads, so OpenCV gets one thread per process, as in a local pool.
    """
    global _prepared
    if not _prepared:
        import cv2

        cv2.setNumThreads(1)
        _prepared = True
    return fn(*args, **kwargs)


def translate_error(error: BaseException) -> BaseException:
    """Our own errors as they are; Dask's failures (workers that kept dying, a lost scheduler) as ``WorkerError``."""
    if isinstance(error, ShardgenError) or not type(error).__module__.startswith("distributed"):
        return error
    if type(error).__name__ == "KilledWorker":
        return WorkerError(
            "Dask workers died repeatedly while running one task (distributed.scheduler.allowed-failures "
            f"reached; out of memory? see the workers' logs); {RESUME}"
        )
    return WorkerError(f"the Dask cluster failed ({reason(error)}); {RESUME}")
