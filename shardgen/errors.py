"""One exception tree: every error shardgen raises on purpose is a ``ShardgenError``.

The CLI turns these into one line on stderr and an exit code; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import signal
from pathlib import Path


class ShardgenError(Exception):
    """Base of every expected failure; ``str()`` is the one-line message shown to users.

    ``exit_code`` is 1 where the build could not finish its work (output, workers, a failed verify)
    and 2 where what was asked for is wrong (options, inputs, DST holding another build).
    """

    exit_code = 1

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        # A URL (s3://bucket/key) stays a string: Path() would fold its "//".
        is_url = isinstance(path, str) and "://" in path
        self.path: Path | str | None = path if path is None or is_url else Path(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)

    def __reduce__(self):
        # Errors raised in worker processes are pickled back to the parent; the default reduce
        # would call __init__ with the formatted message only and fail (or lose the path).
        return (type(self), (self.message, self.path))


class UsageError(ShardgenError):
    """The command line asks for something impossible (missing SRC, DST is a file, bad option)."""

    exit_code = 2


class InputError(ShardgenError):
    """An input file cannot be read as sketches: corrupt, wrong format, or an unsafe pickle."""

    exit_code = 2


def with_skip_hint(error: InputError) -> InputError:
    """``error`` as the build stops on it: its message also says how to build without the file."""
    return type(error)(f"{error.message}; --on-error skip builds without it", error.path)


class UnsafePickleError(InputError):
    """A pickle inside an ``.npz`` asks for something other than numpy array reconstruction."""


class SketchError(ShardgenError):
    """One sketch is invalid (wrong shape, not finite, out of range); it carries where it is."""

    exit_code = 2

    def __init__(self, reason: str, source: str, split: str, index: int) -> None:
        self.reason, self.source, self.split, self.index = reason, source, split, index
        super().__init__(f"{source}: {split}[{index}]: {reason}")

    def __reduce__(self):
        # Raised in workers: the parent must be able to unpickle it with this signature.
        return (type(self), (self.reason, self.source, self.split, self.index))


class OptionsChangedError(ShardgenError):
    """DST holds a build made with other inputs or options; resuming it would mix two datasets."""

    exit_code = 2


class OutputLockedError(UsageError):
    """Another build is writing into DST right now (it holds the folder's lock)."""


class OutputError(ShardgenError):
    """DST cannot be written (no space, no permission, read-only filesystem)."""


class WorkerError(ShardgenError):
    """A render worker died or failed while rendering a chunk."""


class VerifyError(ShardgenError):
    """``shardgen verify`` found a build that does not match its manifest (corrupt, missing, extra)."""


def reason(error: BaseException) -> str:
    """The first line of an error's message, or its type when it has none: for one-line reports."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class Interrupted(KeyboardInterrupt):
    """The build was stopped by SIGINT or SIGTERM; completed shards are kept and a rerun resumes.

    A ``KeyboardInterrupt`` rather than a ``ShardgenError`` on purpose: ``except Exception`` in a
    caller must never swallow a Ctrl-C. The CLI exits with ``128 + signal number`` (130, 143).
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        self.message = (
            f"interrupted ({signal.Signals(signum).name}); completed shards are kept; rerun the same command to resume"
        )
        super().__init__(self.message)

    def __reduce__(self):
        return (type(self), (self.signum,))
