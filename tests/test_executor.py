"""Running tasks: our own process pool, submitting without cancellation races, stopping on signals."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import SimpleNamespace

import cv2
import pytest

from shardgen import executor, singlethread
from shardgen.errors import Interrupted
from shardgen.executor import StopOnSignals, new_pool, stop_pool, submit_task


def thread_names() -> list[str]:
    """Runs in a pool worker: the names of its threads."""
    return [thread.name for thread in threading.enumerate()]


@pytest.fixture(scope="module")
def pool():
    """One pool of our own for the tests that only ask its workers something."""
    workers = new_pool(1)
    yield workers
    stop_pool(workers, kill=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ((signal.getsignal, signal.SIGINT), signal.SIG_IGN),
        ((cv2.getNumThreads,), 1),
    ],
    ids=["ignores-sigint", "one-opencv-thread"],
)
def test_new_pool_workers_are_set_up_by_init_worker(pool, probe, expected):
    """A worker of new_pool ignores SIGINT (only the parent acts on Ctrl-C) and runs OpenCV single-threaded."""
    assert pool.submit(*probe).result() == expected


@pytest.mark.slow
def test_new_pool_workers_watch_the_build_process(pool):
    """A worker of new_pool runs the thread that ends it once the build process is gone."""
    assert "build-watch" in pool.submit(thread_names).result()


# Run in a fresh interpreter with no thread-count variable set: this test process imported the
# command line (see ``singlethread``), which set them here already.
WORKER_THREADS = """
import os
from shardgen.executor import new_pool, stop_pool
pool = new_pool(1)
print(*(pool.submit(os.getenv, name).result() for name in NAMES))
print("OPENBLAS_NUM_THREADS" in os.environ)
stop_pool(pool, kill=False)
"""


@pytest.fixture(scope="module")
def fresh_worker() -> list[list[str]]:
    """What a worker of new_pool, in a fresh interpreter, and that interpreter say of their environments."""
    env = {k: v for k, v in os.environ.items() if k not in singlethread.THREAD_VARIABLES}
    code = WORKER_THREADS.replace("NAMES", repr(singlethread.THREAD_VARIABLES))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line.split() for line in done.stdout.splitlines()]


@pytest.mark.slow
def test_new_pool_workers_keep_native_libraries_to_one_thread(fresh_worker):
    """A worker of new_pool sees every thread-count variable at 1, though the build process set none: the
    fork server set them before it imported numpy, whose OpenBLAS otherwise starts threads that spin."""
    assert fresh_worker[0] == ["1"] * len(singlethread.THREAD_VARIABLES)


@pytest.mark.slow
def test_new_pool_leaves_the_callers_environment_alone(fresh_worker):
    """Starting workers sets no thread-count variable in the caller's own process."""
    assert fresh_worker[1] == ["False"]


@pytest.mark.slow
def test_start_fork_server_starts_the_server_new_pool_forks_workers_from(pool):
    """After start_fork_server, the pool's workers are children of the server it started (and left running)."""
    executor.start_fork_server()
    server = multiprocessing.forkserver._forkserver._forkserver_pid
    assert server is not None
    assert pool.submit(os.getppid).result() == server


def run_submitted(fn, *args):
    """``await submit_task(...)`` on a thread pool, in a loop of its own."""

    async def submitted():
        with ThreadPoolExecutor(1) as threads:
            return await submit_task(asyncio.get_running_loop(), threads, fn, *args)

    return asyncio.run(submitted())


def test_submit_task_gives_the_task_s_result():
    """The future submit_task returns resolves to what the task returned."""
    assert run_submitted(divmod, 7, 2) == (3, 1)


def test_submit_task_gives_the_task_s_exception():
    """The future submit_task returns fails with the task's own exception."""
    with pytest.raises(ZeroDivisionError):
        run_submitted(divmod, 7, 0)


def test_cancelling_a_submitted_future_leaves_the_task_to_run():
    """Cancelling submit_task's future gives up on the result; the task, still queued, runs all the same."""
    release, ran = threading.Event(), threading.Event()

    async def cancel_a_queued_task():
        with ThreadPoolExecutor(1) as threads:
            loop = asyncio.get_running_loop()
            submit_task(loop, threads, release.wait)  # holds the pool's one thread
            future = submit_task(loop, threads, ran.set)
            future.cancel()
            await asyncio.sleep(0)  # what cancelling sets off runs now
            release.set()
        return future.cancelled()

    assert asyncio.run(cancel_a_queued_task())
    assert ran.is_set()


def test_a_result_after_the_loop_closed_is_dropped_quietly(caplog):
    """A task that ends after its event loop closed raises nothing in the executor's callback."""
    release = threading.Event()

    async def submit_and_leave(threads):
        submit_task(asyncio.get_running_loop(), threads, release.wait)

    with caplog.at_level(logging.ERROR, logger="concurrent.futures"), ThreadPoolExecutor(1) as threads:
        asyncio.run(submit_and_leave(threads))
        release.set()
    assert caplog.records == []


class FakeExit:
    """Stands in for ``os._exit`` and for ``time.monotonic``, so a second signal is seen, not obeyed."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.now = 100.0

    def exit(self, code: int) -> None:
        self.codes.append(code)


@pytest.fixture
def fake(monkeypatch) -> FakeExit:
    fake = FakeExit()
    monkeypatch.setattr(executor.os, "_exit", fake.exit)
    monkeypatch.setattr(executor, "time", SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def run_stopped(signals: StopOnSignals, signum: int, again_after: float | None = None, fake: FakeExit | None = None):
    """What ``signals.run`` returns for a build-like coroutine that gets ``signum``, and, with
    ``again_after``, the same signal once more that many seconds later on ``fake``'s clock."""

    async def stopped():
        signal.raise_signal(signum)
        if again_after is not None and fake is not None:
            fake.now += again_after
            signal.raise_signal(signum)
        await asyncio.sleep(60)
        return "finished"

    with signals:
        return asyncio.run(signals.run(stopped()))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_cancels_the_running_build_and_is_received(signum):
    """SIGINT or SIGTERM during StopOnSignals.run cancels its task: run returns None, received names it."""
    signals = StopOnSignals()
    assert run_stopped(signals, signum) is None
    assert signals.received == signum


def test_a_repeated_signal_within_a_second_is_ignored(fake):
    """The same stop arriving twice at once (group and wrapper) stops the build once, no hard exit."""
    assert run_stopped(StopOnSignals(), signal.SIGTERM, 0.5, fake) is None
    assert fake.codes == []


def test_a_signal_a_second_later_exits_at_once(fake):
    """A second stop more than a second after the first (Ctrl-C again) exits the process at once."""
    run_stopped(StopOnSignals(), signal.SIGTERM, 1.5, fake)
    assert fake.codes == [128 + signal.SIGTERM]


def test_a_signal_outside_a_running_build_is_recorded_and_raised_by_check():
    """Under StopOnSignals with no build task running, a signal raises nothing where it lands; check() raises it."""
    with StopOnSignals() as signals:
        signal.raise_signal(signal.SIGTERM)
        assert signals.received == signal.SIGTERM
        with pytest.raises(Interrupted):
            signals.check()


def test_a_build_whose_stop_came_before_it_does_not_start():
    """run() after a signal returns None without starting the build's coroutine."""
    started = []

    async def build():
        started.append(True)

    with StopOnSignals() as signals:
        signal.raise_signal(signal.SIGINT)
        assert asyncio.run(signals.run(build())) is None
    assert started == []


def test_stop_on_signals_restores_the_previous_handlers():
    """Leaving StopOnSignals puts back the SIGINT and SIGTERM handlers that were there before."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with StopOnSignals():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_stop_on_signals_outside_the_main_thread_sets_no_handler():
    """Entered in another thread (signal handlers are the main thread's), StopOnSignals changes nothing."""
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def enter() -> None:
        with StopOnSignals():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert seen == [before]


@pytest.mark.slow
def test_a_graceful_stop_lets_busy_workers_finish():
    """stop_pool(kill=False) waits for the task a worker holds, whose result then arrives."""
    workers = new_pool(1)
    workers.submit(os.getpid).result()  # a worker is up
    busy = workers.submit(time.sleep, 0.5)
    stop_pool(workers, kill=False)
    assert busy.result() is None


@pytest.mark.slow
def test_a_killing_stop_ends_workers_still_busy_after_the_grace(monkeypatch):
    """stop_pool(kill=True) kills a worker still busy after STOP_GRACE: its task fails, nothing waits for it."""
    monkeypatch.setattr(executor, "STOP_GRACE", 0.2)
    workers = new_pool(1)
    workers.submit(os.getpid).result()  # a worker is up
    busy = workers.submit(time.sleep, 600)
    stop_pool(workers, kill=True)
    with pytest.raises(BrokenProcessPool):
        busy.result()


def _ignore_sigterm(hold: float) -> int:
    """In a worker: ignore SIGTERM from now on (as one started after a stop signal never saw it); hold the worker."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(hold)
    return os.getpid()


@pytest.mark.slow
def test_a_killing_stop_ends_a_broken_pool_whose_worker_missed_the_terminate():
    """A worker died, and the manager thread waits on another its terminate did not end: stop_pool(kill=True)
    kills it and returns once the manager thread has ended, where the pool's own shutdown would wait forever."""
    workers = new_pool(2)
    pids = {future.result() for future in [workers.submit(_ignore_sigterm, 0.5) for _ in range(2)]}
    assert len(pids) == 2  # both workers ignore SIGTERM
    dies = workers.submit(os._exit, 1)
    with pytest.raises(BrokenProcessPool):
        dies.result(timeout=30)
    manager = workers._executor_manager_thread
    stopping = threading.Thread(target=stop_pool, args=(workers, True), daemon=True)
    try:
        stopping.start()
        stopping.join(30)
        assert not stopping.is_alive(), "stop_pool waited for a worker that never ends"
        assert not manager.is_alive()
    finally:
        for pid in pids:  # so a failure cannot leave the test run hanging at exit
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
