"""What a person sees: help texts, progress on and off a terminal, the summary, --json, -q, --dry-run."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import typer.main
from rich.console import Console
from typer.testing import CliRunner

from shardgen.cli import app
from shardgen.npz import object_array
from shardgen.report import VERBOSE, ProgressReporter
from shardgen.sample import write_samples
from shardgen.write import ShardRecord
from tests.helpers import write_npz

FAST = ["--procs", "1", "--size", "32", "--shard-size", "100", "--chunk-size", "16"]


def invoke(*args) -> object:
    """Run the CLI in-process; CliRunner's stderr is not a terminal, like a CI log."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def src_with_bad_sketch(tmp_path_factory):
    """Two sample categories plus one whose valid split holds an invalid sketch (one of 11)."""
    src = tmp_path_factory.mktemp("bad")
    write_samples(src, categories=2, per_split=20, seed=3)
    good = np.array([[0, 0, 0], [5, 5, 0], [3, -2, 1]], np.int16)
    write_npz(
        src / "zebra.npz",
        train=object_array([good] * 10),
        valid=object_array([good] * 10 + [np.zeros((2, 2), np.int16)]),
        test=object_array([good] * 10),
    )
    return src


def test_every_command_and_option_has_help_with_its_default():
    """Each command has a help line; each option has help text, and each optional one shows its default."""
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert command.help and command.help.strip(), name
        result = invoke(name, "--help")
        assert result.exit_code == 0, result.output
        # Hidden options (build --png-encoder, for scripts/bench only) are left out of --help on purpose.
        options = [p for p in command.params if p.name not in ("help", "version") and not getattr(p, "hidden", False)]
        for param in options:
            assert param.help, f"{name} {param.name} has no help text"
            assert param.param_type_name == "argument" or param.opts[0] in result.output
        with_default = [p for p in options if p.param_type_name == "option" and not p.required]
        for param in with_default:
            shown = isinstance(param.show_default, str) or not (param.default is None or param.default is False)
            assert shown, f"{name} {param.opts[0]} shows no default"
        assert result.output.count("[default:") == len(with_default), name


def test_top_level_help_shows_a_short_example():
    """`shardgen --help` lists the commands and an example to copy."""
    result = invoke("--help")
    assert result.exit_code == 0
    assert "shardgen sample ./npz" in result.output and "shardgen build ./npz ./shards" in result.output
    assert "sample" in result.output and "build" in result.output


def test_unknown_option_suggests_the_right_one(sample_src, tmp_path):
    """A mistyped option names the close valid ones."""
    result = invoke("build", sample_src, tmp_path / "out", "--szie", "32")
    assert result.exit_code == 2
    assert "--size" in result.output


def test_invalid_choice_lists_the_valid_ones(sample_src, tmp_path):
    """An unknown --on-error value is one line that lists the valid values."""
    result = invoke("build", sample_src, tmp_path / "out", "--on-error", "ignore")
    assert result.exit_code == 2
    assert "skip-sketches, skip, fail" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_negative_procs_is_a_usage_error_with_the_fix(sample_src, tmp_path):
    """--procs 0 or below is refused with a hint, not a traceback."""
    result = invoke("build", sample_src, tmp_path / "out", "--procs", "-1")
    assert result.exit_code == 2
    assert "--procs must be at least 1" in result.stderr and "every core" in result.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(sample_src, tmp_path):
    """--dry-run shows classes, samples and shards per split and an estimated size; DST is not created."""
    dst = tmp_path / "out"
    result = invoke("build", sample_src, dst, "--dry-run", "--shard-size", "100", "--no-progress")
    assert result.exit_code == 0, result.output
    assert not dst.exists()
    assert "classes: 4 (circle, square, star, triangle)" in result.stdout
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.split()}
    assert rows["train"][1:4] == ["240", "3", "80"]
    assert rows["total"][1:3] == ["720", "9"]
    assert "estimated from 64 sketches" in result.stdout


def test_dry_run_json_gives_counts_shards_and_estimate(sample_src, tmp_path):
    """--dry-run --json prints the plan as JSON: per-split images, shards and a positive size estimate."""
    result = invoke("build", sample_src, tmp_path / "out", "--dry-run", "--json", "--splits", "train,valid")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True
    assert plan["classes"] == ["circle", "square", "star", "triangle"]
    assert set(plan["splits"]) == {"train", "valid"}
    assert plan["splits"]["train"]["images"] == 240 and plan["splits"]["train"]["shards"] == 1
    assert plan["estimated_bytes"] > 240 * 2 * 1024  # three tar headers per sample at least
    assert plan["sampled"] == 64


def test_json_summary_has_every_field(src_with_bad_sketch, tmp_path):
    """--json prints only JSON on stdout: per-split images/shards/bytes/skipped and the totals and rate."""
    dst = tmp_path / "out"
    result = invoke("build", src_with_bad_sketch, dst, *FAST, "--json", "--no-progress")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 3 * 50
    assert summary["splits"]["valid"] == {
        "images": 50,
        "shards": 1,
        "bytes": (dst / "valid-000000.tar").stat().st_size,
        "skipped": 1,
        "blank": 0,
    }
    assert summary["splits"]["train"]["skipped"] == 0
    assert summary["skipped"] == 1
    assert summary["shards"] == summary["shards_written"] == 3 and summary["shards_reused"] == 0
    assert summary["bytes"] == sum(p.stat().st_size for p in dst.glob("*.tar"))
    assert summary["images_rendered"] == 150 and summary["seconds"] > 0 and summary["images_per_second"] > 0
    assert "zebra.npz: skipped 1 invalid sketch(es)" in result.stderr


def test_summary_table_has_a_skipped_column_and_aligned_rows(src_with_bad_sketch, tmp_path):
    """The summary is a table (split, images, shards, bytes, skipped, blank) whose rows line up."""
    result = invoke("build", src_with_bad_sketch, tmp_path / "out", *FAST, "--no-progress")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["split", "images", "shards", "bytes", "skipped", "blank"]
    table = lines[:5]
    assert [line.split()[0] for line in table[1:]] == ["train", "valid", "test", "total"]
    assert len({len(line) for line in table}) == 1  # right-aligned columns end in the same place
    assert table[2].split()[5] == "1"  # valid's skipped
    assert "shards written 3, reused 0; skipped 1" in lines[5]


def test_quiet_prints_nothing_on_success(sample_src, tmp_path):
    """-q: no progress, no summary, nothing on stdout or stderr when all goes well."""
    result = invoke("build", sample_src, tmp_path / "out", *FAST, "-q")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    assert (tmp_path / "out" / "manifest.json").exists()


def test_quiet_still_prints_warnings(src_with_bad_sketch, tmp_path):
    """-q keeps the warning about skipped sketches: data left out is never silent."""
    result = invoke("build", src_with_bad_sketch, tmp_path / "out", *FAST, "-q")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == ["warning: zebra.npz: skipped 1 invalid sketch(es)"]


def test_quiet_and_verbose_together_are_refused(sample_src, tmp_path):
    """-q -v contradict each other: a usage error."""
    result = invoke("build", sample_src, tmp_path / "out", "-q", "-v")
    assert result.exit_code == 2 and "contradict" in result.stderr


def test_progress_off_a_terminal_is_plain_log_lines(sample_src, tmp_path, monkeypatch):
    """Without a terminal, progress is plain lines (no escape codes): stage starts, periodic, final figures."""
    monkeypatch.setattr(ProgressReporter, "LOG_EVERY", 0.0)  # a line per update instead of every 10 s
    result = invoke("build", sample_src, tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "\x1b" not in result.stderr
    assert lines[0] == "ingest: 4 files"
    assert "render: 720 images" in lines
    periodic = [line for line in lines if re.match(r"render: [\d,]+/720 images \(\d+%\), [\d,]+ images/s, ETA ", line)]
    assert periodic, lines
    assert re.match(
        r"render: 720/720 images \(100%\), [\d,]+ images/s, took [\d:]+, shards written 9, skipped 0$", lines[-1]
    )


def test_no_progress_is_silent_on_stderr(sample_src, tmp_path):
    """--no-progress: nothing on stderr, the summary still on stdout."""
    result = invoke("build", sample_src, tmp_path / "out", *FAST, "--no-progress")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "720 images" in result.stdout


def test_verbose_logs_each_shard_with_its_timing(sample_src, tmp_path):
    """-v adds one line per written shard with its images, size and seconds."""
    result = invoke("build", sample_src, tmp_path / "out", *FAST, "-v", "--no-progress")
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("wrote ")]
    assert len(lines) == 9
    assert re.match(r"wrote train-000000\.tar: 80 images, [\d.]+ KB in [\d.]+ s \([\d,]+ images/s\)$", lines[0])


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
        reporter.shard_done(ShardRecord("train-000000.tar", 60, 123_000, "", ""), 0.5)
        reporter.advance(40)
    text = out.getvalue()
    final = text[text.rindex("render") :]
    assert "100/100 images" in final and "shards 1" in final and "skipped 2" in final
    # Each redraw starts with a carriage return and erase-line; a printed line stands on its own.
    segments = [s.strip() for s in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text))]
    assert "warning: bad.npz: skipped 2 invalid sketch(es)" in segments
    assert "wrote train-000000.tar: 60 images, 123.0 KB in 0.50 s (120 images/s)" in segments


def test_rebuild_says_nothing_to_render_and_nothing_rendered(sample_src, tmp_path):
    """A rerun that reuses every shard says so instead of showing a 0/0 bar and a 0 images/s rate."""
    invoke("build", sample_src, tmp_path / "out", *FAST, "-q")
    result = invoke("build", sample_src, tmp_path / "out", *FAST)
    assert result.exit_code == 0
    assert "render: nothing to render, every shard is already complete" in result.stderr.splitlines()
    assert re.search(
        r"^720 images in [\d.]+ s, nothing rendered; shards written 0, reused 9; skipped 0$", result.stdout, re.M
    )


def test_warnings_keep_square_brackets():
    """A warning naming `valid[3]` or a file called `[x].npz` is printed as is, not read as markup."""
    out = io.StringIO()
    reporter = ProgressReporter(console=Console(file=out, width=100))
    reporter.warn("[x].npz: valid[3]: shape (2, 2) is not (n, 3)")
    assert out.getvalue() == "warning: [x].npz: valid[3]: shape (2, 2) is not (n, 3)\n"


def test_quiet_json_prints_only_the_json(sample_src, tmp_path):
    """-q with --json: stdout is the JSON alone, stderr is empty."""
    result = invoke("build", sample_src, tmp_path / "out", "--dry-run", "--json", "-q")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["images"] == 720
    assert result.stderr == ""
