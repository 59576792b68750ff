"""The write stage: chunks become shards on disk, atomically, in plan order.

A shard is written to ``NAME.tar.partial``; when its last chunk is in, it gets its end-of-archive
blocks, is flushed, fsynced and renamed to ``NAME.tar``, and only then recorded in the journal.
So no reader ever sees a truncated shard under a final name, and the journal lists only shards
that are complete on disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import aiofiles
import aiofiles.os

from . import faults, tar
from .atomic import fsync_dir
from .errors import OutputError

PARTIAL_SUFFIX = ".partial"
_fsync = aiofiles.os.wrap(os.fsync)


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard as the journal and the manifest describe it."""

    file: str
    count: int
    bytes: int
    sha256: str
    md5: str


def output_error(error: OSError, path: Path) -> OutputError:
    """Turn an ``OSError`` from writing output into a one-line error naming the path."""
    reason = error.strerror or str(error)
    hint = " (free some space and rerun to resume)" if error.errno == errno.ENOSPC else ""
    return OutputError(f"cannot write: {reason}{hint}", path)


class ShardFile:
    """One shard being written: append chunk bytes, then :meth:`seal` it under its final name."""

    def __init__(self, path: Path, handle) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL_SUFFIX)
        self._handle = handle
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self.count = 0
        self._fault_index = faults.shard_opened() if faults.ACTIVE else -1

    @classmethod
    async def create(cls, path: Path) -> ShardFile:
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        try:
            if faults.ACTIVE:
                faults.output_write(partial)
            handle = await aiofiles.open(partial, "wb")
        except OSError as error:
            raise output_error(error, partial) from None
        return cls(path, handle)

    async def append(self, data: bytes, count: int) -> None:
        await self._write(data)
        self.count += count

    async def _write(self, data: bytes) -> None:
        try:
            if faults.ACTIVE:
                faults.shard_write(self._fault_index, self.partial)
            await self._handle.write(data)
        except OSError as error:
            raise output_error(error, self.partial) from None
        self._sha256.update(data)
        self._md5.update(data)
        self.size += len(data)

    async def seal(self) -> ShardRecord:
        """End the archive, make it durable, and rename it to its final name."""
        await self._write(tar.end_of_archive(self.size))
        try:
            await self._handle.flush()
            await _fsync(self._handle.fileno())
            await self._handle.close()
            if faults.ACTIVE:
                faults.point("rename")
            await aiofiles.os.replace(self.partial, self.path)
        except OSError as error:
            raise output_error(error, self.partial) from None
        fsync_dir(self.path.parent)
        return ShardRecord(self.path.name, self.count, self.size, self._sha256.hexdigest(), self._md5.hexdigest())

    async def discard(self) -> None:
        """Close and delete the partial file (used when a build stops mid-shard)."""
        with contextlib.suppress(OSError):
            await self._handle.close()
        with contextlib.suppress(OSError):
            os.unlink(self.partial)


class Journal:
    """Append-only record of completed shards (``journal.jsonl``), fsynced line by line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, ShardRecord]:
        """Completed shards by file name; a torn last line (crash mid-append) is ignored."""
        records: dict[str, ShardRecord] = {}
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return records
        for line in lines:
            try:
                record = ShardRecord(**json.loads(line))
            except (ValueError, TypeError):
                continue
            records[record.file] = record
        return records

    def append(self, record: ShardRecord) -> None:
        try:
            if faults.ACTIVE:
                faults.output_write(self.path)
            with open(self.path, "a") as f:
                f.write(json.dumps(asdict(record)) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as error:
            raise output_error(error, self.path) from None

    def reset(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, read in blocks (to check a journaled shard before reusing it)."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()
