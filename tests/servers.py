"""Real servers for tests, on 127.0.0.1 only, always stopped: a Dask cluster and moto's S3 server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import ROOT

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args: list[str], log: Path, env: dict | None = None, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start a server in its own process group (so stopping it stops its children too)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*prefix, sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a server and everything it started; SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@dataclass
class DaskCluster:
    """A ``dask scheduler`` and its ``dask worker`` processes, each in its own process group."""

    address: str
    folder: Path
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen] = field(default_factory=list)

    def add_worker(self, env: dict | None = None, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        """Start one ``dask worker --nworkers 1 --nthreads 1`` (``prefix``: a command to run it under)."""
        args = ["-m", "dask", "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1"]
        args += ["--no-dashboard", "--local-directory", str(self.folder / "workers")]
        worker = _start(args, self.folder / f"worker-{len(self.workers)}.log", env, prefix)
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=START_TIMEOUT)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.folder.glob("*.log"))
        )

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            stop(process)


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2, env: dict | None = None) -> Iterator[DaskCluster]:
    """A scheduler on a free port of 127.0.0.1 with ``workers`` single-threaded workers, stopped afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = ["-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    cluster = DaskCluster(f"tcp://127.0.0.1:{port}", folder, _start(args, folder / "scheduler.log", env))
    try:
        for _ in range(workers):
            cluster.add_worker(env)
        if workers:
            cluster.wait_for_workers(workers)
        yield cluster
    finally:
        cluster.stop()


@dataclass
class MotoServer:
    """moto's S3 server: a real S3 HTTP endpoint on 127.0.0.1."""

    endpoint: str
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point every S3 client (s3fs, boto) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def filesystem(self):
        """An s3fs filesystem on this server, to put inputs up and look at what a build wrote."""
        import s3fs

        return s3fs.S3FileSystem(
            endpoint_url=self.endpoint,
            key="testing",
            secret="testing",
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def upload(self, local: Path, url: str) -> None:
        """Copy a local folder's files to ``url`` (``s3://bucket/prefix``), making the bucket if needed."""
        fs = self.filesystem()
        bucket = url.split("://", 1)[1].split("/", 1)[0]
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        fs.put(f"{local}/", f"{url}/", recursive=True)

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object directly under ``prefix`` (``bucket/folder``), by name."""
        fs = self.filesystem()
        paths = sorted(path for path in fs.ls(prefix, detail=False) if fs.isfile(path))
        return {path.rsplit("/", 1)[1]: fs.cat_file(path) for path in paths}

    def reset(self) -> None:
        """Forget every bucket and object (moto's own reset endpoint)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()


@contextlib.contextmanager
def moto_server(folder: Path) -> Iterator[MotoServer]:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = _start(["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], folder / "moto.log")
    server = MotoServer(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start:\n{(folder / 'moto.log').read_text()}") from None
                time.sleep(0.1)
        yield server
    finally:
        stop(process)
