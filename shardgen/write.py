"""The write stage's records: finished shards, the journal that lists them, output errors.

Workers write the bytes (see ``fragments``): a shard appears as ``NAME.tar`` only complete and
fsynced, and only then does the parent record it in the journal. So no reader ever sees a
truncated shard under a final name, and the journal lists only shards that are complete on disk.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from . import faults
from .errors import OutputError
from .fragments import stream_digests


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard as the journal and the manifest describe it."""

    file: str
    count: int
    bytes: int
    sha256: str


def parse_records(texts: Iterable[str | bytes]) -> dict[str, ShardRecord]:
    """Records by file name from their JSON texts; an unreadable text (a torn line) is skipped.

    Fields this version does not write are ignored: an older build journaled each shard's md5 too.
    """
    records: dict[str, ShardRecord] = {}
    for text in texts:
        try:
            found = json.loads(text)
            record = ShardRecord(**{field.name: found[field.name] for field in fields(ShardRecord)})
        except (ValueError, TypeError, KeyError):
            continue
        records[record.file] = record
    return records


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
        try:
            return parse_records(self.path.read_text().splitlines())
        except FileNotFoundError:
            return {}

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
    """Size and sha256 of a file (to check a journaled shard before reusing it)."""
    with open(path, "rb") as f:
        return stream_digests(f)
