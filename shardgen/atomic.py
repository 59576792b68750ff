"""Atomic file writes: readers see the old file or the new one, never a half-written one."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import faults


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file, fsync, and ``os.replace``."""
    _write_via_temp(Path(path), lambda f: f.write(data))


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-ordered-as-given JSON."""
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_npy(path: Path, array: np.ndarray, durable: bool = True) -> None:
    """Atomically write a ``.npy`` file (plain, no pickle) that workers can memory-map.

    ``durable=False`` skips the fsyncs, for a file that every run writes again before anything
    reads it: a crash can lose it, never leave it in use half-written.
    """
    _write_via_temp(Path(path), lambda f: write_npy_to(f, array), durable)


class _Writes:
    """Only a ``write`` method: numpy then writes through it rather than with C ``fwrite``."""

    def __init__(self, file) -> None:
        self.write = file.write


def write_npy_to(file, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` bytes to an open file, so that a full disk raises ``ENOSPC``.

    numpy writes real files with ``fwrite`` and reports a short write as "72303 requested and
    30656 written", without the errno; Python's own ``write`` raises the real ``OSError``.
    """
    np.lib.format.write_array(_Writes(file), np.ascontiguousarray(array), allow_pickle=False)


def temp_path(path: Path) -> Path:
    """A fresh name next to ``path`` where an atomic write stages its bytes (``.NAME.PID-RANDOM.tmp``).

    Unique per call: a task that Dask reruns elsewhere while its first run is still writing (a
    worker declared dead that is not) never shares a temp file with it; the last rename wins whole.
    """
    return path.with_name(f".{path.name}.{writer_tag()}.tmp")


def writer_tag() -> str:
    """``PID-RANDOM``: unique to one write, so that two writers of the same file never share a staged one."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


WRITER_TAG = r"\d+-[0-9a-f]{8}"  # what writer_tag gives, as a regular expression
_TEMP_NAME = re.compile(rf"\.(?P<name>.+?)(?:\.{WRITER_TAG})?\.tmp")  # also ``.NAME.tmp``, as older versions named it


def temp_target(temp_name: str) -> str | None:
    """The name of the file a temp file (as :func:`temp_path` names it) was staging; None for any other name."""
    match = _TEMP_NAME.fullmatch(temp_name)
    return match["name"] if match else None


@contextlib.contextmanager
def replacing(path: Path, staged: Path, buffering: int = -1) -> Iterator[BinaryIO]:
    """Write ``staged`` in the ``with`` block, then rename it to ``path``; if the block fails, remove it.

    A full disk, an interrupt or a failed render leaves neither a partial file under ``path`` nor
    the staged file. Durability is the caller's: fsync in the block, :func:`fsync_dir` after it.
    """
    try:
        with open(staged, "wb", buffering=buffering) as f:
            yield f
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staged)
        raise


def fsync(file: BinaryIO) -> None:
    """Flush ``file``'s buffer and make its bytes durable."""
    file.flush()
    os.fsync(file.fileno())


SYNC_FILE_RANGE_WRITE = 2  # from <linux/fs.h>: start writing dirty pages out, do not wait


def start_writeback(file: BinaryIO) -> None:
    """Have the kernel start writing out what ``file`` holds now, without waiting for the disk.

    Linux's ``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)``; elsewhere nothing. Called as a
    long file is written, so that the disk writes it while the writer goes on, and the file's
    final fsync waits only for its last few MB (an 80 MB shard written 8 MB at a time: its fsync
    waited 29 ms without this, 3 ms with it; no more CPU). Advisory: an error here is left to the
    fsync, which reports it; bytes still in ``file``'s own buffer go out later.
    """
    sync_file_range = _sync_file_range()
    if sync_file_range is not None:
        sync_file_range(file.fileno(), 0, 0, SYNC_FILE_RANGE_WRITE)


@functools.cache
def _sync_file_range():
    """libc's ``sync_file_range``, or None where there is none (macOS, Windows)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _write_via_temp(path: Path, write, durable: bool = True) -> None:
    if faults.ACTIVE:
        faults.output_write(path)
    with replacing(path, temp_path(path)) as f:
        write(f)
        if durable:
            fsync(f)
    if durable:
        fsync_dir(path.parent)
