"""Worker-side output files: chunk fragments, and the seal that joins them into a shard.

A chunk task streams its tar members into a fragment file (``DST/.shardgen/parts/NAME.START``),
written under a temp name and renamed, so a rerun of the same task replaces it whole and a killed
worker leaves only a temp file (removed with the parts folder when the build ends). When every
chunk of a shard is in, one seal task joins the fragments in plan order into a partial file
(``NAME.PID-RANDOM.partial``) while hashing, appends the end-of-archive, fsyncs, renames it to
``NAME`` and removes the fragments. A shard that one task renders whole skips the fragment:
``write_shard`` packs, hashes and seals it in one pass. Results are a few numbers, never bytes.

Plain functions over paths, so the destination can later be something other than a local folder
(object storage has no rename: there the seal uploads under the final key only when complete).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from . import dali, faults, tar
from .atomic import WRITER_TAG, fsync, fsync_dir, replacing, start_writeback, temp_path, writer_tag

PARTS_DIR = "parts"
PARTIAL_SUFFIX = ".partial"
_BUFFER = 1 << 20  # samples are small: gather them into large writes; a large one bypasses it
WRITEBACK_BYTES = 8 << 20  # a shard's pages are handed to the disk this often (see atomic.start_writeback)


def fragment_path(state_dir: Path, shard_name: str, start: int) -> Path:
    """Where the chunk of ``shard_name`` that begins at plan position ``start`` is written."""
    return Path(state_dir) / PARTS_DIR / f"{shard_name}.{start}"


def partial_path(path: Path) -> Path:
    """A fresh name next to shard ``path`` where it is sealed (``NAME.PID-RANDOM.partial``).

    Unique per call, as :func:`atomic.temp_path` is: a seal that Dask reruns while a first run,
    on a worker declared dead that is not, is still writing never writes into the same file.
    """
    path = Path(path)
    return path.with_name(f"{path.name}.{writer_tag()}{PARTIAL_SUFFIX}")


_PARTIAL_NAME = re.compile(rf"(?P<name>.+?)(?:\.{WRITER_TAG})?{re.escape(PARTIAL_SUFFIX)}")  # also ``NAME.partial``


def partial_target(partial_name: str) -> str | None:
    """The name of the shard a partial file (as :func:`partial_path` names it, or older versions:
    ``NAME.partial``) was sealing; None for any other name."""
    match = _PARTIAL_NAME.fullmatch(partial_name)
    return match["name"] if match else None


def write_fragment(
    path: Path, samples: Iterable[tuple[str, list[tuple[str, bytes]]]], list_members: bool = False
) -> int:
    """Write each sample ``(key, [(ext, data), ...])`` as it comes to ``path`` as tar members
    ``key + ext`` (via a temp file); returns the fragment's size.

    With ``list_members``, each member's name and size are listed too, for the shard's DALI index.
    """
    path = Path(path)
    listed: list[tuple[str, int]] = []
    with replacing(path, temp_path(path), buffering=_BUFFER) as f:
        for key, members in samples:
            f.write(tar.sample(key, members))
            if list_members:
                listed += ((key + ext, len(data)) for ext, data in members)
        if list_members:
            dali.write_members(dali.members_path(path), listed)
        size = f.tell()
    return size


def seal_shard(fragments: list[Path], path: Path, fault_index: int = -1, dali_index: bool = False) -> tuple[int, str]:
    """Join ``fragments`` in order into shard ``path``, hashing as it goes; returns size and sha256.

    The shard appears under its final name only complete and fsynced. No md5: a wids index may
    list one (``md5sum``), but wids never checks it, and it cost half the seal. With
    ``dali_index``, the shard's ``.idx`` is written from the member lists of its fragments and
    where each fragment starts in the shard: no read of the shard.

    Idempotent: Dask reruns a task whose worker died, possibly after that run had renamed the
    shard and removed some fragments, or while it still runs (a worker declared dead that is not).
    A fragment is removed only once its shard is in place, so a fragment found missing with the
    shard there means the shard is complete: it is only hashed again. Each run seals into its own
    partial file (see :func:`partial_path`); both write the same bytes, and the last rename wins.
    """
    path = Path(path)
    try:
        if path.exists() and not all(Path(fragment).exists() for fragment in fragments):
            return _digests(path)
        return _join(fragments, path, fault_index, dali_index)
    except FileNotFoundError:
        if not path.exists():
            raise
        return _digests(path)  # the other run sealed it and removed fragments while this one read them


def _join(fragments: list[Path], path: Path, fault_index: int, dali_index: bool) -> tuple[int, str]:
    starts = []
    with _sealing(path, fault_index) as shard:
        for fragment in fragments:
            starts.append(shard.size)
            # Plain 1 MB reads: readinto a reused buffer, mmap, os.copy_file_range, os.sendfile
            # and 256 KB or 4 MB blocks measured no cheaper (within 0.3 us an image, or dearer).
            with open(fragment, "rb", buffering=0) as f:
                while block := f.read(_BUFFER):
                    shard.write(block)
    if dali_index:  # after the rename is safe: the journal, not the file, says a shard is done
        dali.write_index(path, dali.pieces_members(fragments, starts))
    for fragment in fragments:
        for leftover in (fragment, dali.members_path(fragment)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    return shard.size, shard.sha256.hexdigest()


def _digests(path: Path) -> tuple[int, str]:
    with open(path, "rb") as f:
        return stream_digests(f)


def write_shard(
    path: Path,
    samples: Iterable[tuple[str, list[tuple[str, bytes]]]],
    fault_index: int = -1,
    dali_index: bool = False,
) -> tuple[int, str]:
    """Write each sample ``(key, [(ext, data), ...])`` as tar members straight into shard ``path``,
    hashing as it goes; returns size and sha256.

    The one-pass form of :func:`write_fragment` and :func:`seal_shard` for a shard that one task
    renders whole: the same bytes, with no fragment to write, read back and remove (measured: the
    second pass cost ~4 us of CPU an image, and its fsync wait held a worker). Complete, fsynced
    and under its final name, or absent, as with :func:`seal_shard`; a rerun rewrites it whole.
    """
    path = Path(path)
    listed: list[tuple[str, int]] = []
    with _sealing(path, fault_index, buffering=_BUFFER) as shard:  # samples are small: large writes
        for key, members in samples:
            shard.write(tar.sample(key, members))
            if dali_index:
                listed += ((key + ext, len(member)) for ext, member in members)
    if dali_index:
        dali.write_index(path, dali.member_offsets(listed))
    return shard.size, shard.sha256.hexdigest()


class _ShardBytes:
    """Blocks of one shard going into its ``.partial`` file, hashed and counted on the way; every
    ``WRITEBACK_BYTES``, the disk is asked to start writing them, so the seal's fsync is short."""

    def __init__(self, out: BinaryIO, partial: Path, fault_index: int) -> None:
        self.out, self.partial, self.fault_index = out, partial, fault_index
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._writeback_at = WRITEBACK_BYTES

    def write(self, block: bytes) -> None:
        if faults.ACTIVE:
            faults.shard_write(self.fault_index, self.partial)
        self.sha256.update(block)
        self.out.write(block)
        self.size += len(block)
        if self.size >= self._writeback_at:
            start_writeback(self.out)
            self._writeback_at = self.size + WRITEBACK_BYTES


@contextlib.contextmanager
def _sealing(path: Path, fault_index: int, buffering: int = -1) -> Iterator[_ShardBytes]:
    """Write shard ``path``'s bytes in the ``with`` block; then end the archive, fsync, and rename
    its partial file (see :func:`partial_path`) to ``NAME``. A block that fails leaves neither file."""
    partial = partial_path(path)
    with replacing(path, partial, buffering) as out:
        shard = _ShardBytes(out, partial, fault_index)
        yield shard
        shard.write(tar.end_of_archive(shard.size))
        fsync(out)
        if faults.ACTIVE:
            faults.point("rename")
    fsync_dir(path.parent)


def stream_digests(stream: BinaryIO) -> tuple[int, str]:
    """Size and sha256 of what ``stream`` holds, read in blocks."""
    sha = hashlib.sha256()
    size = 0
    while block := stream.read(_BUFFER):
        sha.update(block)
        size += len(block)
    return size, sha.hexdigest()
