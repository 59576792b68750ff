"""The write stage's records: finished shards, the journal that lists them, output errors.

Workers write the bytes (see ``fragments``): a shard appears as ``NAME.tar`` only complete and
fsynced, and only then does the parent record it in the journal. So no reader ever sees a
truncated shard under a final name, and the journal lists only shards that are complete on disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from . import faults
from .errors import OutputError


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard as the journal and the manifest describe it."""

    file: str
    count: int
    bytes: int
    sha256: str
    md5: str


def output_error(error: OSError, path: Path | str) -> OutputError:
    """Turn an ``OSError`` from writing output into a one-line error naming the path."""
    reason = error.strerror or str(error)
    hint = " (free some space and rerun to resume)" if error.errno == errno.ENOSPC else ""
    return OutputError(f"cannot write: {reason}{hint}", path)


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


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, read in blocks (to check a journaled shard before reusing it)."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()
