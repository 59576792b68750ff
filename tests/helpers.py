"""Shared helpers for tests: run the CLI, read shards back, craft input files."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from shardgen.reading import shard_samples
from shardgen.sample import write_samples

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str | Path, timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m shardgen ARGS`` as a user would, capturing text output."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "shardgen", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        **kwargs,
    )


def assert_one_line_error(result, *fragments: str, code: int = 2) -> None:
    """A user error: exit ``code`` and one line on stderr, holding every fragment, and no traceback.

    ``result`` is a ``subprocess.CompletedProcess`` or a typer ``CliRunner`` result.
    """
    returncode = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr


def read_shard(path: Path) -> dict[str, dict[str, bytes]]:
    """All samples of one tar shard: ``{key: {extension: bytes}}``, in archive order."""
    return dict(shard_samples(path))


def read_split(dst: Path, split: str) -> dict[str, dict[str, bytes]]:
    """Every sample of a split across its shards; asserts no key appears twice."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted(Path(dst).glob(f"{split}-*.tar")):
        for key, sample in read_shard(shard).items():
            assert key not in samples, f"key {key} repeats ({shard.name})"
            samples[key] = sample
    return samples


def shard_bytes(dst: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(dst).glob("*.tar"))}


def published_files(dst: Path) -> dict[str, bytes]:
    """Every file a build publishes in DST (shards, manifest, wids indexes), by name."""
    return {p.name: p.read_bytes() for p in sorted(Path(dst).iterdir()) if p.is_file()}


def sample_folder(tmp_path_factory, name: str, *, categories: int, per_split: int, seed: int) -> Path:
    """A fresh temp folder of ``shardgen sample`` .npz files (for module- and session-scoped fixtures)."""
    src = tmp_path_factory.mktemp(name)
    write_samples(src, categories=categories, per_split=per_split, seed=seed)
    return src


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    """An ``.npz`` as ``numpy.savez`` writes it (object arrays pickled by this numpy)."""
    np.savez(path, **arrays)
    return Path(path)


def write_raw_npz(path: Path, members: dict[str, bytes]) -> Path:
    """An ``.npz`` whose ``.npy`` members are given as raw bytes (for hand-made pickles)."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, data in members.items():
            archive.writestr(f"{key}.npy", data)
    return Path(path)


def npy_object_header(length: int) -> bytes:
    """The ``.npy`` v1.0 header of a 1-D object array, as numpy writes it."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (%d,), }" % length
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")


def python2_object_pickle(arrays: list[np.ndarray]) -> bytes:
    """A protocol-2 pickle of an object array of int16 arrays exactly as Python 2 + numpy 1.x wrote
    the public sketch-rnn files: ``numpy.core.multiarray._reconstruct`` and py2 ``str`` payloads."""

    def short_str(data: bytes) -> bytes:
        return (b"U" + bytes([len(data)]) + data) if len(data) < 256 else (b"T" + struct.pack("<I", len(data)) + data)

    def small_int(value: int) -> bytes:
        return b"K" + bytes([value]) if value < 256 else b"M" + struct.pack("<H", value)

    out = [
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02",
        b"K\x00\x85",
        short_str(b"b"),
        b"\x87Rq\x03(K\x01",
        small_int(len(arrays)),
        b"\x85",
        b"cnumpy\ndtype\nq\x04",
        short_str(b"O8"),
        b"K\x00K\x01\x87Rq\x05(K\x03",
        short_str(b"|"),
        b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]q\x06(",
    ]
    for array in arrays:
        rows = array.astype("<i2")
        out += [
            b"h\x01h\x02K\x00\x85",
            short_str(b"b"),
            b"\x87R(K\x01",
            small_int(len(rows)),
            b"K\x03\x86h\x04",
            short_str(b"i2"),
            b"K\x00K\x01\x87R(K\x03",
            short_str(b"<"),
            b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89",
            short_str(rows.tobytes()),
            b"tb",
        ]
    out.append(b"etb.")
    return npy_object_header(len(arrays)) + b"".join(out)


class Payload:
    """Pickles as a call that creates ``marker``: proof of code execution if the file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def tar_members(path: Path) -> list[str]:
    with tarfile.open(path) as archive:
        return archive.getnames()


def counts_by_class(samples: dict[str, dict[str, bytes]]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for sample in samples.values():
        counts[int(sample["cls"])] += 1
    return dict(counts)


# Small and quick, but several chunks per shard and several shards per split, so a build can be
# stopped early, mid-shard or between shards.
BUILD_ARGS = ("--procs", "2", "--size", "32", "--shard-size", "60", "--chunk-size", "10", "--no-progress")
# The same build with the default chunk size: of its 12 shards, the first 8 are each rendered whole by
# one task, straight into place (see orchestrate.whole_shards); the same bytes as BUILD_ARGS give.
WHOLE_SHARD_ARGS = ("--procs", "2", "--size", "32", "--shard-size", "60", "--no-progress")


def start_cli(*args: str | Path, env: dict | None = None) -> subprocess.Popen:
    """Start ``python -m shardgen ARGS`` in its own process group (so a test can signal all of it)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "shardgen", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        start_new_session=True,
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 120, every: float = 0.05) -> None:
    """Poll every ``every`` s until ``condition()`` holds; fail early if ``process`` ends first (a bounded wait,
    not a timing assert)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"process ended ({process.returncode}) before the awaited moment:\n{err}")
        if time.monotonic() > deadline:
            kill_group(process)
            raise AssertionError("timed out waiting for the build to reach the awaited moment")
        time.sleep(every)


def kill_group(process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    """Signal ``process``'s whole group (the build, its fork server, its workers) and reap it."""
    os.killpg(process.pid, signum)
    process.communicate()


def kill_build_at(src: Path, dst: Path, point: str, n: int, marker: Path, args: tuple[str, ...] = BUILD_ARGS) -> None:
    """Start ``shardgen build SRC DST`` and SIGKILL its process group at the ``n``th pass of crash point ``point``."""
    fault = f"stop:at={point},n={n},marker={marker}"
    process = start_cli("build", src, dst, *args, env={"SHARDGEN_FAULT": fault})
    wait_for(marker.exists, process)
    kill_group(process)


def leftovers(dst: Path) -> list[str]:
    """Partial shards, temp files and chunk fragments anywhere under ``dst``: none once a build ends."""
    parts = Path(dst) / ".shardgen" / "parts"
    return sorted(
        str(p.relative_to(dst))
        for p in Path(dst).rglob("*")
        if p.name.endswith((".partial", ".tmp")) or p == parts or parts in p.parents
    )
