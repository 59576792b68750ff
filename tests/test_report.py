"""The progress reporter (the terminal bar, its counts, warnings printed as they are) and the summary line."""

from __future__ import annotations

import io
import re

from rich.console import Console

from shardgen.progress import BuildResult
from shardgen.report import VERBOSE, ProgressReporter, print_summary
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


def summary_line(capsys, images=100, rendered=100, seconds=2.0, skipped=(), skipped_files=()) -> str:
    """The last line ``print_summary`` prints for a one-split build with these figures."""
    split = {"count": images, "shards": [{"bytes": 1000}], "blank": 0}
    manifest = {"splits": {"train": split}, "skipped": list(skipped), "skipped_files": list(skipped_files)}
    print_summary(BuildResult("out", manifest, rendered, 1, 0, seconds))
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_a_resumed_build_says_how_many_images_it_rendered(capsys):
    """Where shards were reused, the line gives the images rendered next to the total: the rate is theirs."""
    line = summary_line(capsys, images=43_100, rendered=27_600)
    assert line.startswith("43,100 images (27,600 rendered) in 2.0 s, 13,800 images/s;"), line
    assert summary_line(capsys).startswith("100 images in 2.0 s, 50 images/s;")


def test_skips_the_split_rows_do_not_show_are_named(capsys):
    """Skipped records of no split and skipped files are named, so the footer adds up with the table."""
    skipped = [{"split": "train"}, {"line": 3}, {"line": 7}, {"line": 9}]
    line = summary_line(capsys, skipped=skipped, skipped_files=[{"source": "bad.npz"}])
    assert line.endswith("skipped 5 (3 unreadable record(s) of no split, 1 file(s), listed in manifest.json)"), line
    line = summary_line(capsys, skipped=skipped[:1])
    assert line.endswith("skipped 1 (listed in manifest.json)"), line
