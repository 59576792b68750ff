"""Where a build's files live: a local folder, or any fsspec URL (``s3://bucket/prefix``, ``gs://...``).

Plain paths stay plain ``os`` calls, the fast path; URLs go through fsspec, with the user's
storage options (``--storage-option KEY=VALUE``) and the backend's usual environment (for S3:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...). Code that reads
inputs or writes outputs asks a :class:`Location` and does not branch on which kind it is.

An object store has no rename, so "atomic" means: a small object is written with one PUT, and a
finished file is uploaded under its final key only once its bytes are complete (s3fs completes
its multipart upload when the upload ends); a reader sees the old object, the new one, or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import atomic
from .errors import InputError, OutputError, ShardgenError, UsageError, reason

# The extra that installs each protocol's fsspec backend.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
COPY_BLOCK = 1 << 20


def is_url(target: object) -> bool:
    """Whether ``target`` names an fsspec URL (``s3://...``) rather than a local path."""
    return isinstance(target, str) and "://" in target


def parse_storage_options(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["anon=true", "endpoint_url=http://..."]`` -> ``{"anon": True, "endpoint_url": "http://..."}``.

    A value that parses as JSON (numbers, ``true``/``false``, objects such as
    ``client_kwargs={"region_name": "eu-west-1"}``) is passed as such; anything else as a string.
    """
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--storage-option must be KEY=VALUE, got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


@dataclass(frozen=True)
class Location:
    """A folder (local path or URL) and the storage options needed to reach it; picklable."""

    root: str
    storage_options: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, target: str | Path, storage_options: dict | None = None) -> Location:
        root = str(target).rstrip("/") if is_url(target) else str(Path(target))
        return cls(root, dict(storage_options or {}))

    @property
    def is_local(self) -> bool:
        return not is_url(self.root)

    def url(self, name: str = "") -> str:
        """The full path or URL of ``name`` inside this folder."""
        return f"{self.root}/{name}" if name else self.root

    def path(self, name: str = "") -> Path:
        """The local path of ``name`` (local locations only)."""
        return Path(self.root) / name if name else Path(self.root)

    def child(self, name: str) -> Location:
        return Location(self.url(name), self.storage_options)

    def _fs(self):
        """The fsspec filesystem and this folder's path in it."""
        try:
            from fsspec.core import url_to_fs

            return url_to_fs(self.root, **self.storage_options)
        except ImportError as error:
            protocol = self.root.split("://", 1)[0]
            extra = EXTRAS.get(protocol)
            hint = f"pip install 'shardgen[{extra}]'" if extra else f"install the fsspec backend for {protocol}://"
            raise UsageError(f"{protocol}:// needs a backend that is not installed ({error}): {hint}") from None
        except (ValueError, TypeError) as error:  # unknown protocol, bad storage options
            raise UsageError(f"cannot use this location: {error}", self.root) from None

    def _remote(self, name: str) -> tuple[Any, str]:
        fs, root = self._fs()
        return fs, f"{root.rstrip('/')}/{name}" if name else root

    def exists(self, name: str = "") -> bool:
        return self._test(name, Path.exists, "exists")

    def is_dir(self) -> bool:
        return self._test("", Path.is_dir, "isdir")

    def is_file(self) -> bool:
        return self._test("", Path.is_file, "isfile")

    def _test(self, name: str, local: Callable[[Path], bool], remote: str) -> bool:
        """``local(path)`` on a local folder, the fsspec method named ``remote`` on a URL."""
        if self.is_local:
            return local(self.path(name))
        fs, path = self._remote(name)
        return getattr(fs, remote)(path)

    def list(self, files_only: bool = True) -> list[str]:
        """Names of the files (or of every entry) directly in this folder, sorted; none if it is missing."""
        if self.is_local:
            if not self.path().is_dir():
                return []
            return sorted(p.name for p in self.path().iterdir() if p.is_file() or not files_only)
        fs, root = self._remote("")
        fs.invalidate_cache(root)  # listings are cached per filesystem instance; we want today's
        try:
            entries = fs.ls(root, detail=True)
        except FileNotFoundError:
            return []
        names = (e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file" or not files_only)
        return sorted(names)

    def identity(self, name: str) -> dict:
        """Size and version of a file, to notice a changed input (mtime locally, ETag or mtime remotely)."""
        if self.is_local:
            path = self.path(name)
            # lstat for a dangling symlink: reading it fails later, with an error naming it
            stat = path.stat() if path.exists() else path.lstat()
            return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        fs, remote_path = self._remote(name)
        info = fs.info(remote_path)
        version = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
        return {"size": int(info.get("size") or 0), "version": str(version)}

    def read_bytes(self, name: str) -> bytes:
        if self.is_local:
            return self.path(name).read_bytes()
        fs, path = self._remote(name)
        return fs.cat_file(path)

    def open_read(self, name: str) -> BinaryIO:
        """A binary stream of ``name``, read as it is consumed (never whole into memory)."""
        if self.is_local:
            return open(self.path(name), "rb")
        fs, path = self._remote(name)
        return fs.open(path, "rb")

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write a small object: temp file and rename locally (making the folder), one PUT on object storage."""
        if self.is_local:
            os.makedirs(self.path(name).parent, exist_ok=True)
            atomic.write_bytes(self.path(name), data)
            return
        fs, path = self._remote(name)
        fs.pipe_file(path, data)

    def put_file(self, local: Path, name: str) -> None:
        """Give a finished local file its final name here; visible only once complete."""
        if self.is_local:
            os.replace(local, self.path(name))
            atomic.fsync_dir(self.path())
            return
        fs, path = self._remote(name)
        fs.put_file(str(local), path)

    def delete(self, name: str) -> None:
        """Delete ``name`` if it exists."""
        if self.is_local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))
            return
        fs, path = self._remote(name)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

    def remove_tree(self, name: str) -> None:
        """Delete the folder ``name`` and everything in it, if it exists."""
        if self.is_local:
            shutil.rmtree(self.path(name), ignore_errors=True)
            return
        fs, path = self._remote(name)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path, recursive=True)

    @contextlib.contextmanager
    def local_copy(self, name: str) -> Iterator[Path]:
        """A local path holding ``name``: the file itself, or a remote object streamed into a temp file.

        Errors that name the temp copy are re-raised naming the URL, so messages point at the input.
        """
        if self.is_local:
            yield self.path(name)
            return
        with tempfile.TemporaryDirectory(prefix="shardgen-") as folder:
            copy = Path(folder) / name
            try:
                with self.open_read(name) as remote, open(copy, "wb") as local:
                    shutil.copyfileobj(remote, local, COPY_BLOCK)
            except Exception as error:
                if not is_storage_error(error):
                    raise
                raise InputError(f"cannot read: {reason(error)}", self.url(name)) from None
            try:
                yield copy
            except ShardgenError as error:
                if error.path == copy:
                    raise type(error)(error.message, self.url(name)) from None
                raise


# Packages whose exceptions mean "the storage failed" (botocore's are not OSErrors).
_STORAGE_PACKAGES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google", "fsspec")


def is_storage_error(error: BaseException) -> bool:
    """Whether ``error`` came from reaching storage (a refused connection, bad credentials, ...)."""
    return isinstance(error, OSError) or type(error).__module__.split(".")[0] in _STORAGE_PACKAGES


def storage_error(error: Exception, target: str | Path, doing: str) -> OutputError:
    """An error from writing output through fsspec or its backend, as one line naming ``target``."""
    return OutputError(f"cannot {doing}: {reason(error)}", target)
