"""What a person sees: a progress bar while a build runs and a summary table when it ends."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .pipeline import BuildResult, Reporter
from .write import ShardRecord


class ProgressReporter(Reporter):
    """A rich progress bar on a terminal; a log line every few seconds otherwise (CI logs)."""

    LOG_EVERY = 10.0  # seconds between plain progress lines

    def __init__(self, enabled: bool = True) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.progress: Progress | None = None
        self.task = None
        self.name, self.total, self.done, self.shards = "", 0, 0, 0
        self.last_log = time.monotonic()

    def __enter__(self) -> ProgressReporter:
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[shards]}"),
                console=self.console,
                refresh_per_second=4,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def stage(self, name: str, total: int) -> None:
        self.name, self.total, self.done, self.started = name, total, 0, time.monotonic()
        if self.progress is not None:
            self.task = self.progress.add_task(name, total=total, rate="", shards="")
        elif self.enabled:
            unit = "files" if name == "ingest" else "images"
            self.console.print(f"{name}: {total} {unit}", highlight=False)

    def advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None and self.task is not None:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            rate = f"{self.done / elapsed:,.0f}/s" if self.name == "render" else ""
            shards = f"{self.shards} shards" if self.name == "render" else ""
            self.progress.update(self.task, advance=count, rate=rate, shards=shards)
        elif self.enabled and time.monotonic() - self.last_log >= self.LOG_EVERY:
            self.last_log = time.monotonic()
            self.console.print(f"{self.name}: {self.done}/{self.total}", highlight=False)

    def shard_done(self, record: ShardRecord, seconds: float) -> None:
        self.shards += 1

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False)


def print_summary(result: BuildResult) -> None:
    """A small table per split, then totals and the rate, on stdout."""
    console = Console(file=sys.stdout)
    table = Table(box=None, pad_edge=False)
    for column in ("split", "images", "shards", "bytes", "blank"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, info in result.manifest["splits"].items():
        size = sum(s["bytes"] for s in info["shards"])
        table.add_row(split, f"{info['count']:,}", str(len(info["shards"])), _human(size), f"{info['blank']:,}")
    console.print(table)
    skipped = len(result.manifest["skipped"]) + len(result.manifest["skipped_files"])
    rate = result.images_rendered / result.seconds if result.seconds > 0 else 0.0
    console.print(
        f"{result.images:,} images in {result.seconds:.1f} s ({rate:,.0f} images/s rendered); "
        f"shards written {result.shards_written}, reused {result.shards_reused}; "
        f"skipped {skipped}",
        highlight=False,
        soft_wrap=True,  # one line, whatever the terminal width, so logs and scripts can match it
    )


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"  # pragma: no cover
