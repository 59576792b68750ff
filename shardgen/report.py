"""What a person sees: progress while a build runs, a summary when it ends, a plan for ``--dry-run``.

Progress and log lines go to stderr, summaries to stdout (``--json`` makes stdout machine-readable).
On a terminal progress is a rich bar per stage; elsewhere (CI logs, pipes) it is a plain line every
``LOG_EVERY`` seconds. Warnings and ``-v`` lines are printed through the bar's console, so they appear
above the bar instead of being drawn over.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .dryrun import BuildPlan
from .progress import BuildResult, Reporter
from .reading import human_bytes
from .write import ShardRecord

QUIET, NORMAL, VERBOSE = 0, 1, 2
UNITS = {"ingest": "files", "read": "files", "render": "images"}


class ProgressReporter(Reporter):
    """A rich progress bar on a terminal; a log line every ``LOG_EVERY`` seconds otherwise (CI logs).

    ``enabled=False`` (``--no-progress``) or ``verbosity=QUIET`` (``-q``) hide progress; warnings are
    always printed, since they mean data was left out. ``verbosity=VERBOSE`` (``-v``) adds a line per
    shard with its timing.
    """

    LOG_EVERY = 10.0  # seconds between plain progress lines
    REFRESH_PER_SECOND = 4  # rich redraws in its own thread; updates only change numbers

    def __init__(self, enabled: bool = True, verbosity: int = NORMAL, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.verbosity = verbosity
        self.enabled = enabled and verbosity > QUIET
        self.live = self.enabled and self.console.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.notes: list[str] = []
        self.name, self.total, self.done, self.shards, self.skipped = "", 0, 0, 0, 0
        self.started = self.last_log = time.monotonic()

    def __enter__(self) -> ProgressReporter:
        if self.live:
            # Elapsed time only when the terminal is wide enough; the bar takes what is left.
            wide = self.console.width >= 120
            self.progress = Progress(
                TextColumn("[bold]{task.description:<6}"),
                BarColumn(bar_width=max(10, min(40, self.console.width - (100 if wide else 84)))),
                TextColumn("{task.completed:>,.0f}/{task.total:,.0f} {task.fields[unit]}"),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                *([TimeElapsedColumn()] if wide else []),
                TextColumn("ETA"),
                TimeRemainingColumn(compact=True),
                TextColumn("{task.fields[counts]}"),
                console=self.console,
                refresh_per_second=self.REFRESH_PER_SECOND,
            )
            self.progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
            # Printed once the bars are gone, so the lines read in the order things happened.
            for note in self.notes:
                self._log(note)
        elif exc_type is None:
            self._finish()

    def _finish(self) -> None:
        """Close a stage in plain mode with its final figures (the bar shows them on a terminal)."""
        if self.enabled and self.progress is None and self.name and self.total:
            self._log(self._plain_line())

    def stage(self, name: str, total: int) -> None:
        self._finish()
        self.name, self.total, self.done = name, total, 0
        self.started = self.last_log = time.monotonic()
        if total == 0 and name == "render":
            self.task = None
            if self.progress is not None:
                self.notes.append("render: nothing to render, every shard is already complete")
            elif self.enabled:
                self._log("render: nothing to render, every shard is already complete")
        elif self.progress is not None:
            self.task = self.progress.add_task(name, total=total, unit=UNITS.get(name, ""), **self._fields())
        elif self.enabled:
            self._log(f"{name}: {total:,} {UNITS.get(name, '')}")

    def advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=count, **self._fields())
        elif self.enabled:
            now = time.monotonic()
            if now - self.last_log >= self.LOG_EVERY and self.done < self.total:
                self.last_log = now
                self._log(self._plain_line())

    def shard_done(self, record: ShardRecord, seconds: float) -> None:
        self.shards += 1
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, **self._fields())
        if self.verbosity >= VERBOSE:
            rate = record.count / seconds if seconds > 0 else 0.0
            self._log(
                f"wrote {record.file}: {record.count:,} images, {human_bytes(record.bytes)} "
                f"in {seconds:.2f} s ({rate:,.0f} images/s)"
            )

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    def skip(self, count: int) -> None:
        self.skipped += count
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, **self._fields())

    def _fields(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        # Files arrive a few a second at most: a files/s figure says nothing, images/s is the speed.
        rate = f"{self.done / elapsed:,.0f} images/s" if self.done and self.name == "render" else ""
        counts = f"shards {self.shards}  skipped {self.skipped}" if self.name == "render" else f"skipped {self.skipped}"
        return {"rate": rate, "counts": counts}

    def _plain_line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        percent = 100 * self.done / self.total if self.total else 100.0
        parts = [f"{self.name}: {self.done:,}/{self.total:,} {UNITS.get(self.name, '')} ({percent:.0f}%)"]
        parts.append(f"{rate:,.0f} {UNITS.get(self.name, '')}/s")
        if self.done < self.total and rate > 0:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        else:
            parts.append(f"took {_clock(elapsed)}")
        if self.name == "render":
            parts.append(f"shards written {self.shards}")
        parts.append(f"skipped {self.skipped}")
        return ", ".join(parts)

    def _log(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)


def summary(result: BuildResult) -> dict:
    """The build's figures as plain data: what ``--json`` prints and the table shows."""
    manifest = result.manifest
    splits = {}
    for split, info in manifest["splits"].items():
        splits[split] = {
            "images": info["count"],
            "shards": len(info["shards"]),
            "bytes": sum(s["bytes"] for s in info["shards"]),
            "skipped": sum(1 for s in manifest["skipped"] if s.get("split") == split),
            "blank": info["blank"],
        }
    return {
        "dst": str(result.dst),
        "splits": splits,
        "images": result.images,
        "shards": sum(s["shards"] for s in splits.values()),
        "bytes": sum(s["bytes"] for s in splits.values()),
        "skipped": len(manifest["skipped"]) + len(manifest["skipped_files"]),
        "skipped_files": len(manifest["skipped_files"]),
        **({"filtered": manifest["filtered"]} if "filtered" in manifest else {}),
        "images_rendered": result.images_rendered,
        "shards_written": result.shards_written,
        "shards_reused": result.shards_reused,
        "seconds": round(result.seconds, 3),
        "images_per_second": round(result.images_rendered / result.seconds, 1) if result.seconds > 0 else 0.0,
    }


def _images(data: dict) -> str:
    """``N images``, and how many of them this run rendered when it reused shards (the rate is theirs)."""
    images, rendered = data["images"], data["images_rendered"]
    return f"{images:,} images" + (f" ({rendered:,} rendered)" if 0 < rendered < images else "")


def _skipped(data: dict) -> str:
    """``skipped N``, saying what the split rows above do not show: records of no split, whole files."""
    in_splits = sum(split["skipped"] for split in data["splits"].values())
    files = data["skipped_files"]
    unsplit = data["skipped"] - files - in_splits  # e.g. an ndjson line that does not parse: no split yet
    details = [f"{unsplit:,} unreadable record(s) of no split"] if unsplit else []
    details += [f"{files:,} file(s)"] if files else []
    details += ["listed in manifest.json"] if data["skipped"] else []
    return f"skipped {data['skipped']:,}" + (f" ({', '.join(details)})" if details else "")


def _print(data: dict, as_json: bool, print_tables: Callable[[dict], None]) -> None:
    """``data`` as indented JSON on stdout with ``--json``, else as ``print_tables`` lays it out."""
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        print_tables(data)


def print_summary(result: BuildResult, as_json: bool = False) -> None:
    """A small table per split, then totals and the rate, on stdout (or the same as JSON)."""
    _print(summary(result), as_json, _summary_tables)


def _summary_tables(data: dict) -> None:
    rows = [
        (split, f"{s['images']:,}", f"{s['shards']:,}", human_bytes(s["bytes"]), f"{s['skipped']:,}", f"{s['blank']:,}")
        for split, s in data["splits"].items()
    ]
    if len(rows) > 1:
        blank = sum(s["blank"] for s in data["splits"].values())
        skipped = sum(s["skipped"] for s in data["splits"].values())
        rows.append(
            (
                "total",
                f"{data['images']:,}",
                f"{data['shards']:,}",
                human_bytes(data["bytes"]),
                f"{skipped:,}",
                f"{blank:,}",
            )
        )
    console = Console(file=sys.stdout, highlight=False)
    console.print(_table(("split", "images", "shards", "bytes", "skipped", "blank"), rows))
    console.print(
        f"{_images(data)} in {data['seconds']:.1f} s, "
        + (f"{data['images_per_second']:,.0f} images/s" if data["images_rendered"] else "nothing rendered")
        + "; "
        f"shards written {data['shards_written']}, reused {data['shards_reused']}; {_skipped(data)}",
        soft_wrap=True,
    )
    if "filtered" in data:
        filtered = data["filtered"]
        console.print(
            f"filtered out {filtered['not_recognized']:,} not recognized, {filtered['country']:,} from other countries",
            soft_wrap=True,
        )


def plan_summary(plan: BuildPlan) -> dict:
    """A dry run's plan as plain data: what ``--dry-run --json`` prints."""
    return {
        "dry_run": True,
        "src": str(plan.src),
        "classes": plan.classes,
        "splits": {
            split: {
                "images": plan.counts[split],
                "shards": len(plan.shard_counts[split]),
                "images_per_shard": max(plan.shard_counts[split], default=0),
                "estimated_bytes": plan.estimated_bytes[split],
            }
            for split in plan.counts
        },
        "images": plan.images,
        "shards": sum(len(s) for s in plan.shard_counts.values()),
        "estimated_bytes": sum(plan.estimated_bytes.values()),
        "bytes_per_sample": round(plan.bytes_per_sample, 1),
        "sampled": plan.sampled,
        "skipped": len(plan.skipped) + len(plan.skipped_files),
    }


def print_plan(plan: BuildPlan, as_json: bool = False) -> None:
    """What a build would write, without having written it (``--dry-run``)."""
    _print(plan_summary(plan), as_json, functools.partial(_plan_lines, plan))


def _plan_lines(plan: BuildPlan, data: dict) -> None:
    console = Console(file=sys.stdout, highlight=False)
    names = ", ".join(plan.classes[:8]) + (f", ... ({len(plan.classes) - 8} more)" if len(plan.classes) > 8 else "")
    console.print("dry run: nothing rendered, nothing written", soft_wrap=True)
    console.print(f"classes: {len(plan.classes)} ({names})", soft_wrap=True)
    rows = [
        (split, f"{s['images']:,}", f"{s['shards']:,}", f"{s['images_per_shard']:,}", human_bytes(s["estimated_bytes"]))
        for split, s in data["splits"].items()
    ]
    if len(rows) > 1:
        rows.append(("total", f"{data['images']:,}", f"{data['shards']:,}", "", human_bytes(data["estimated_bytes"])))
    console.print(_table(("split", "images", "shards", "per shard", "est. size"), rows))
    console.print(
        f"size estimated from {plan.sampled} sketches rendered with these options: "
        f"{human_bytes(round(plan.bytes_per_sample))} per sample; skipped {data['skipped']}",
        soft_wrap=True,
    )


def _table(columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> Table:
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
    for column in columns:
        table.add_column(column, justify="left" if column == "split" else "right", header_style="bold")
    for row in rows:
        table.add_row(*row, style="bold" if row[0] == "total" else None)
    return table


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
