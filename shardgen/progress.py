"""What a build tells its caller: progress as it goes (:class:`Reporter`) and what it produced
(:class:`BuildResult`). The CLI's rich progress bar (``report``) is one ``Reporter``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .write import ShardRecord

if TYPE_CHECKING:
    from .errors import InputError
    from .read import SourceFile
    from .store import ClassRecord


class Reporter:
    """Receives progress; the CLI draws it, a library caller may ignore it. Methods are no-ops."""

    def stage(self, name: str, total: int) -> None:
        """A stage starts: ``ingest`` (total files) or ``render`` (total images to render)."""

    def advance(self, count: int) -> None:
        """``count`` more units of the current stage are done."""

    def shard_done(self, record: ShardRecord, seconds: float) -> None:
        """A shard was sealed under its final name."""

    def warn(self, message: str) -> None:
        """Something was skipped; the build goes on."""

    def skip(self, count: int) -> None:
        """``count`` more inputs (invalid sketches or unreadable files) were left out."""


@dataclass
class BuildResult:
    """What a build produced: the manifest plus a few figures for the summary."""

    dst: Path | str  # a URL where DST is one
    manifest: dict
    images_rendered: int
    shards_written: int
    shards_reused: int
    seconds: float

    @property
    def images(self) -> int:
        return sum(s["count"] for s in self.manifest["splits"].values())


def skipped_file(reporter: Reporter, source: SourceFile, error: InputError) -> dict:
    """Report an input file left out (``on_error="skip"``); returns its entry in ``skipped_files``."""
    reporter.warn(f"skipped {error}")
    reporter.skip(1)
    return {"source": source.name, "reason": error.message}


def skipped_sketches(reporter: Reporter, record: ClassRecord) -> None:
    """Report the invalid sketches left out of one input file, if any."""
    if record.skipped:
        reporter.warn(f"{record.source}: skipped {len(record.skipped)} invalid sketch(es)")
        reporter.skip(len(record.skipped))
