"""A build's output on object storage (DST an fsspec URL such as ``s3://bucket/shards``).

An object store has no rename and no append, so three things work differently from a local DST:

- Shards are sealed in a local work folder (with the packed store, the plan and the chunk
  fragments: what workers read and write at the same path) and then uploaded under their final
  key; the object appears only once the upload is complete (s3fs completes its multipart upload
  at the end), so no reader ever sees part of a shard.
- The journal is one small record object per shard (``DST/.shardgen/journal/NAME.json``), written
  once the shard's upload completed: a rerun reuses exactly the shards it lists.
- The build's identity (``DST/.shardgen/build.json``), the wids indexes and the manifest are small
  objects written with one PUT each, the manifest last.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from . import dali, faults
from .fragments import seal_shard, stream_digests
from .location import Location, is_storage_error, storage_error
from .write import ShardRecord, parse_records

JOURNAL_DIR = "journal"
SEALED_DIR = "sealed"  # in the work folder: shards sealed and waiting for their upload


def default_work_dir(dst: str) -> Path:
    """The local work folder of a URL DST when none is given: stable per DST, so a rerun resumes."""
    digest = hashlib.sha256(dst.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"shardgen-work-{digest}"


class RecordJournal:
    """Completed shards as one small object each, under ``records/journal/``: nothing is appended."""

    def __init__(self, records: Location) -> None:
        self.folder = records.child(JOURNAL_DIR)

    def load(self) -> dict[str, ShardRecord]:
        """Completed shards by file name; an unreadable record is ignored (the shard is rebuilt)."""
        return parse_records(self._read(name) for name in self.folder.list())

    def _read(self, name: str) -> bytes:
        try:
            return self.folder.read_bytes(name)
        except OSError:
            return b""  # not a record: skipped like a damaged one

    def append(self, record: ShardRecord) -> None:
        try:
            self.folder.write_atomic(f"{record.file}.json", json.dumps(asdict(record)).encode())
        except Exception as error:
            if not is_storage_error(error):
                raise
            raise storage_error(error, self.folder.url(f"{record.file}.json"), "write") from None


def seal_and_upload(
    fragments: list[Path], sealed: Path, fault_index: int, dst: Location, dali_index: bool = False
) -> tuple[int, str]:
    """Runs on a worker: seal the shard in the work folder (see ``fragments.seal_shard``), put it
    (after its DALI index, with ``dali_index``) under its final key in ``dst``, and drop the local
    copies; returns size and sha256.

    Idempotent, as Dask reruns need: if an earlier run got as far as removing its local copy, the
    object is complete (uploads are whole or absent) and is read back to be hashed.
    """
    if not sealed.exists() and not all(Path(fragment).exists() for fragment in fragments):
        with dst.open_read(sealed.name) as stream:
            return stream_digests(stream)
    digests = seal_shard(fragments, sealed, fault_index, dali_index)
    if faults.ACTIVE:
        faults.point("upload")
    index = dali.index_path(sealed)
    try:
        if dali_index:
            dst.put_file(index, index.name)
        dst.put_file(sealed, sealed.name)
    except Exception as error:  # botocore's failures are not OSErrors; raise one picklable error
        if not is_storage_error(error):
            raise
        raise storage_error(error, dst.url(sealed.name), "upload") from None
    os.unlink(sealed)
    if dali_index:
        os.unlink(index)
    return digests


def reusable(dst: Location, record: ShardRecord) -> bool:
    """Whether a journaled shard is still there with its recorded size.

    Objects under final keys are only ever complete uploads, so size is checked, not re-hashed
    (that would download every shard); ``shardgen verify`` reads them all when wanted.
    """
    try:
        return dst.identity(record.file)["size"] == record.bytes
    except FileNotFoundError:
        return False
