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
    """One shard being written: append chunk bytes, :meth:`close` it, then :meth:`publish` it.

    The parent only appends bytes. Hashing a shard (sha256 for the manifest, md5 for wids) is the
    one per-byte job left, and at ~1 GB/s of shards (128 workers) it would need more than a core, so
    it happens on a worker, between :meth:`close` and :meth:`publish` (see :func:`file_digests`).
    """

    def __init__(self, path: Path, handle) -> None:
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL_SUFFIX)
        self._handle = handle
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
        self.size += len(data)

    async def close(self) -> None:
        """End the archive and make the partial file durable."""
        await self._write(tar.end_of_archive(self.size))
        try:
            await self._handle.flush()
            await _fsync(self._handle.fileno())
            await self._handle.close()
        except OSError as error:
            raise output_error(error, self.partial) from None

    async def publish(self, digests: tuple[int, str, str]) -> ShardRecord:
        """Rename the closed, hashed partial file to its final name; ``digests`` from :func:`file_digests`."""
        size, sha256, md5 = digests
        try:
            if faults.ACTIVE:
                faults.point("rename")
            await aiofiles.os.replace(self.partial, self.path)
        except OSError as error:
            raise output_error(error, self.partial) from None
        fsync_dir(self.path.parent)
        return ShardRecord(self.path.name, self.count, size, sha256, md5)

    async def seal(self) -> ShardRecord:
        """Close, hash (here, in this process) and publish: for callers without an executor."""
        await self.close()
        return await self.publish(file_digests(self.partial))

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


def file_digests(path: Path) -> tuple[int, str, str]:
    """Size, sha256 and md5 of a file, read in blocks; runs on a worker for a finished shard."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            md5.update(block)
            size += len(block)
    return size, sha.hexdigest(), md5.hexdigest()
