"""The progress reporter: the terminal bar, its counts, and warnings printed as they are."""

from __future__ import annotations

import io
import re

from rich.console import Console

from shardgen.report import VERBOSE, ProgressReporter
from shardgen.write import ShardRecord


def test_terminal_bar_shows_counts_and_prints_warnings_above_it():
    """On a terminal the bar carries images, shards and skipped counts; warnings are lines of their own."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=150, color_system=None)
    with ProgressReporter(console=console, verbosity=VERBOSE) as reporter:
        reporter.stage("ingest", 2)
        reporter.advance(2)
        reporter.warn("bad.npz: skipped 2 invalid sketch(es)")
        reporter.skip(2)
        reporter.stage("render", 100)
        reporter.advance(60)
        reporter.shard_done(ShardRecord("train-000000.tar", 60, 123_000, ""), 0.5)
        reporter.advance(40)
    text = out.getvalue()
    final = text[text.rindex("render") :]
    assert "100/100 images" in final and "shards 1" in final and "skipped 2" in final
    # Each redraw starts with a carriage return and erase-line; a printed line stands on its own.
    segments = [s.strip() for s in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text))]
    assert "warning: bad.npz: skipped 2 invalid sketch(es)" in segments
    assert "wrote train-000000.tar: 60 images, 123.0 KB in 0.50 s (120 images/s)" in segments


def test_warnings_keep_square_brackets():
    """A warning naming `valid[3]` or a file called `[x].npz` is printed as is, not read as markup."""
    out = io.StringIO()
    reporter = ProgressReporter(console=Console(file=out, width=100))
    reporter.warn("[x].npz: valid[3]: shape (2, 2) is not (n, 3)")
    assert out.getvalue() == "warning: [x].npz: valid[3]: shape (2, 2) is not (n, 3)\n"
