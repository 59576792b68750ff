"""The command line as a user meets it: help, progress, summary, --json, -q, --dry-run, one-line errors, exit codes."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import typer.main
from typer.testing import CliRunner

from shardgen import singlethread
from shardgen.cli import app, main, starts_a_local_build
from shardgen.npz import object_array
from shardgen.report import ProgressReporter
from shardgen.sample import write_samples
from tests.helpers import ROOT, Payload, assert_one_line_error, run_cli, write_npz, write_raw_npz
from tests.test_interrupt import _can_mount_read_only

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


COMMANDS = typer.main.get_command(app).commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_option_has_help_with_its_default(name):
    """Each command has a help line; each option has help text, and each optional one shows its default."""
    command = COMMANDS[name]
    assert command.help and command.help.strip(), name
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    # Hidden options (build --png-encoder, for scripts/bench only) are left out of --help on purpose.
    options = [p for p in command.params if p.name not in ("help", "version") and not getattr(p, "hidden", False)]
    assert all(param.help for param in options), [param.name for param in options if not param.help]
    assert all(param.param_type_name == "argument" or param.opts[0] in result.output for param in options)
    with_default = [p for p in options if p.param_type_name == "option" and not p.required]
    hidden_default = [
        p.opts[0]
        for p in with_default
        if not (isinstance(p.show_default, str) or not (p.default is None or p.default is False))
    ]
    assert hidden_default == [], f"{name}: these show no default"
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
    assert_one_line_error(result, "skip-sketches, skip, fail")


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


def test_dry_run_stops_on_a_bad_file_as_a_build_does(tmp_path):
    """--dry-run on an unreadable file: exit 2, one line naming it, and how to build without it."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.npz").write_bytes(b"not a zip file\n")
    result = run_cli("build", src, tmp_path / "out", "--dry-run", "--no-progress")
    assert_one_line_error(result, str(src / "bad.npz"), "not a valid .npz", "; --on-error skip builds without it")
    assert not (tmp_path / "out").exists()


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


def test_rebuild_says_nothing_to_render_and_nothing_rendered(sample_src, tmp_path):
    """A rerun that reuses every shard says so instead of showing a 0/0 bar and a 0 images/s rate."""
    invoke("build", sample_src, tmp_path / "out", *FAST, "-q")
    result = invoke("build", sample_src, tmp_path / "out", *FAST)
    assert result.exit_code == 0
    assert "render: nothing to render, every shard is already complete" in result.stderr.splitlines()
    assert re.search(
        r"^720 images in [\d.]+ s, nothing rendered; shards written 0, reused 9; skipped 0$", result.stdout, re.M
    )


def test_quiet_json_prints_only_the_json(sample_src, tmp_path):
    """-q with --json: stdout is the JSON alone, stderr is empty."""
    result = invoke("build", sample_src, tmp_path / "out", "--dry-run", "--json", "-q")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["images"] == 720
    assert result.stderr == ""


def test_missing_src_is_a_one_line_error(tmp_path):
    """SRC that does not exist: exit 2, one line naming it."""
    assert_one_line_error(run_cli("build", tmp_path / "nope", tmp_path / "out"), "nope", "does not exist")


def test_src_without_npz_files_is_a_one_line_error(tmp_path):
    """SRC with no .npz files: exit 2, one line naming it."""
    assert_one_line_error(run_cli("build", tmp_path, tmp_path / "out"), str(tmp_path), "no .npz files")


def test_dst_that_is_a_file_is_a_one_line_error(sample_src, tmp_path):
    """DST that is a file: exit 2, one line naming it."""
    (tmp_path / "out").write_text("x")
    assert_one_line_error(run_cli("build", sample_src, tmp_path / "out"), "out", "must be a folder")


def test_unsafe_pickle_is_refused_naming_the_file_and_never_runs(tmp_path):
    """An .npz pickling a function call: exit 2, one line naming the file; the payload did not run."""
    src = tmp_path / "src"
    src.mkdir()
    marker = tmp_path / "payload-ran"
    sketch = np.array([[0, 0, 0], [5, 5, 1]], np.int16)
    write_npz(src / "evil.npz", train=object_array([sketch, Payload(marker)]))
    result = run_cli("build", src, tmp_path / "out", "--procs", "1", "--no-progress")
    assert_one_line_error(result, "evil.npz", "only numpy arrays are allowed")
    assert not marker.exists()


def test_sample_then_build_prints_a_summary(tmp_path):
    """The demo path: sample, build, exit 0 with a summary naming images and shards."""
    assert run_cli("sample", tmp_path / "npz", "--categories", "2", "--per-split", "10").returncode == 0
    result = run_cli("build", tmp_path / "npz", tmp_path / "out", "--procs", "1", "--size", "32", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "60 images" in result.stdout and "shards written 3" in result.stdout


def test_bench_only_png_encoder_switch_is_hidden_and_recorded(sample_src, tmp_path):
    """--png-encoder opencv (for scripts/bench) is left out of --help and the manifest names the encoder."""
    assert "--png-encoder" not in run_cli("build", "--help").stdout
    args = ("--procs", "1", "--size", "32", "--splits", "valid", "--no-progress", "--png-encoder", "opencv")
    result = run_cli("build", sample_src, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["options"]["render"]["png_encoder"].startswith("opencv ")


def test_bad_option_value_is_a_one_line_error(sample_src, tmp_path):
    """An out-of-range option is a usage error, not a traceback."""
    assert_one_line_error(run_cli("build", sample_src, tmp_path / "o", "--size", "3"), "size")


def _spoil_deflate_stream(path: Path) -> None:
    """Overwrite the start of the first member's deflate stream with bytes zlib cannot decode."""
    with zipfile.ZipFile(path) as archive:
        info = archive.infolist()[0]
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + int.from_bytes(data[info.header_offset + 28 :][:2], "little")
    data[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def _bad_files(folder: Path, marker: Path) -> dict[str, str]:
    """Write one bad .npz of each kind into ``folder``; return file name -> expected reason."""
    sketch = np.array([[0, 0, 0], [5, 5, 1]], np.int16)
    good = write_npz(folder / "good.npz", train=object_array([sketch] * 3)).read_bytes()
    (folder / "truncated.npz").write_bytes(good[: len(good) // 2])
    (folder / "notzip.npz").write_bytes(b"this is not a zip file\n")
    write_npz(folder / "nokeys.npz", strokes=object_array([sketch]))
    write_npz(folder / "strings.npz", train=object_array(["a", "b"]))
    write_npz(folder / "evil.npz", train=object_array([sketch, Payload(marker)]))
    np.savez_compressed(folder / "deflate.npz", train=object_array([sketch] * 3))
    _spoil_deflate_stream(folder / "deflate.npz")
    header = "{'descr': '<i2', 'fortran_order': False, 'shape': (1000000000000, 3), }"
    npy = b"\x93NUMPY\x01\x00" + len(header + "\n").to_bytes(2, "little") + header.encode() + b"\n" + bytes(60)
    write_raw_npz(folder / "huge.npz", {"train": npy})
    (folder / "good.npz").unlink()
    return {
        "deflate.npz": "train: cannot read .npz: Error -3 while decompressing",
        "huge.npz": "train: header declares shape (1000000000000, 3)",
        "truncated.npz": "not a valid .npz",
        "notzip.npz": "not a valid .npz",
        "nokeys.npz": "has none of the keys train, valid, test",
        "strings.npz": "train[0] is a str, not a stroke array",
        "evil.npz": "only numpy arrays are allowed",
    }


@pytest.mark.parametrize(
    "name", ["truncated.npz", "notzip.npz", "nokeys.npz", "strings.npz", "evil.npz", "deflate.npz", "huge.npz"]
)
def test_each_kind_of_bad_file_is_one_line_naming_it(tmp_path, name):
    """Truncated, not a zip, wrong keys, non-array objects, foreign pickle: exit 2, one line, file, reason, way on."""
    bad, marker = tmp_path / "bad", tmp_path / "payload-ran"
    bad.mkdir()
    reasons = _bad_files(bad, marker)
    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_bytes((bad / name).read_bytes())
    result = run_cli("build", src, tmp_path / "out", "--procs", "1", "--size", "32", "--no-progress")
    assert_one_line_error(result, str(src / name), reasons[name], "; --on-error skip builds without it")
    assert not marker.exists()


def test_on_error_skip_skips_bad_files_and_lists_them(tmp_path):
    """--on-error skip builds the good files, warns about and lists every bad one in the manifest."""
    src, marker = tmp_path / "src", tmp_path / "payload-ran"
    src.mkdir()
    reasons = _bad_files(src, marker)
    write_npz(src / "fine.npz", train=object_array([np.array([[0, 0, 0], [5, 5, 1]], np.int16)] * 4))
    out = tmp_path / "out"
    result = run_cli("build", src, out, "--procs", "1", "--size", "32", "--on-error", "skip", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "skipped 7" in result.stdout
    for name in reasons:
        assert f"skipped {src / name}" in result.stderr.replace("\n", "")
    skipped = json.loads((out / "manifest.json").read_text())["skipped_files"]
    assert {s["source"]: s["reason"] for s in skipped}.keys() == reasons.keys()
    assert all(reasons[s["source"]] in s["reason"] for s in skipped)
    assert json.loads((out / "manifest.json").read_text())["splits"]["train"]["count"] == 4
    assert not marker.exists()


def _damage(dst: Path, how: str) -> Path:
    """Damage a copy of a build the way a careless user or a bad copy would; returns what to pass as DST."""
    manifest_path = dst / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if how == "manifest is a list":
        manifest_path.write_text(json.dumps([manifest]))
    elif how == "shard without sha256":
        del manifest["splits"]["train"]["shards"][0]["sha256"]
        manifest_path.write_text(json.dumps(manifest))
    elif how == "classes not a list":
        manifest["classes"] = "circle"
        manifest_path.write_text(json.dumps(manifest))
    elif how == "class counts not numbers":
        manifest["splits"]["valid"]["class_counts"] = "many"
        manifest_path.write_text(json.dumps(manifest))
    elif how == "render options not an object":
        manifest["options"]["render"] = [32]
        manifest_path.write_text(json.dumps(manifest))
    elif how == "dst is a file":
        return manifest_path
    return dst


@pytest.fixture
def build_copy(small_build, tmp_path) -> Path:
    """A private copy of the small build (without its state) that a test may damage."""
    import shutil

    dst = tmp_path / "build"
    shutil.copytree(small_build, dst, ignore=shutil.ignore_patterns(".shardgen"))
    return dst


@pytest.mark.parametrize("command", ["verify", "info", "preview"])
@pytest.mark.parametrize(
    "how",
    [
        "manifest is a list",
        "shard without sha256",
        "classes not a list",
        "class counts not numbers",
        "render options not an object",
        "dst is a file",
    ],
)
def test_damaged_manifest_or_dst_is_a_one_line_error(build_copy, tmp_path, command, how):
    """A manifest of the wrong shape, or DST that is a file, is one line and exit 2 in verify, info and preview."""
    dst = _damage(build_copy, how)
    extra = ["-o", str(tmp_path / "sheet.png")] if command == "preview" else []
    assert_one_line_error(run_cli(command, dst, *extra), str(dst))


def test_wids_index_that_is_a_list_is_a_verify_finding(build_copy):
    """A wids index holding a JSON list is reported as a problem naming it (exit 1, no traceback)."""
    (build_copy / "train.wids.json").write_text("[]")
    result = run_cli("verify", build_copy)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "train.wids.json: not a wids shard index" in result.stdout


def test_sample_into_a_path_under_a_file_is_a_one_line_error(tmp_path):
    """sample into a folder it cannot create (a file is in the way) is one line and exit 2."""
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run_cli("sample", tmp_path / "file" / "npz"), "cannot write")


@pytest.mark.skipif(_can_mount_read_only() is not None, reason=str(_can_mount_read_only()))
def test_sample_into_a_read_only_folder_is_a_one_line_error(tmp_path):
    """sample into a read-only bind mount (root ignores permissions, not mounts) is one line and exit 2."""
    folder = tmp_path / "ro"
    folder.mkdir()
    script = (
        f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && '
        f'exec "{sys.executable}" -m shardgen sample "{folder}"'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert_one_line_error(result, str(folder), "Read-only file system")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["build", "npz", "shards"], True),
        (["build", "npz", "shards", "--procs", "4"], True),
        (["build", "--help"], False),
        (["build", "npz", "shards", "--dry-run"], False),
        (["build", "npz", "shards", "--scheduler", "tcp://127.0.0.1:8786"], False),
        (["build", "npz", "shards", "--scheduler=tcp://127.0.0.1:8786"], False),
        (["verify", "shards"], False),
        ([], False),
    ],
    ids=["build", "build-procs", "help", "dry-run", "scheduler", "scheduler=", "verify", "nothing"],
)
def test_only_a_local_build_starts_the_fork_server_before_parsing(args, expected):
    """main starts the worker fork server early for a build on local workers, and for nothing else."""
    assert starts_a_local_build(args) is expected


@pytest.mark.parametrize(("args", "status"), [(["--version"], 0), (["info", "/nonexistent/shards"], 2)])
def test_main_exits_with_the_command_status_and_the_collector_frozen(monkeypatch, args, status):
    """main ends with the command's exit status, and freezes the garbage collector first, also
    when the command fails: the interpreter's last collection at exit then skips every object."""
    monkeypatch.setattr(sys, "argv", ["shardgen", *args])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert exited.value.code == status


def test_the_console_script_enters_before_the_command_line_loads():
    """The console script enters through shardgen.__main__:main, whose import loads neither typer nor the CLI yet."""
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["shardgen"] == "shardgen.__main__:main"
    code = "import sys, shardgen.__main__; print(sorted({'typer', 'shardgen.cli'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["[]"], done.stderr


def test_the_command_line_process_keeps_native_libraries_to_one_thread():
    """Importing the command line sets the thread-count variables (unless set) before numpy is imported."""
    env = {k: v for k, v in os.environ.items() if k not in singlethread.THREAD_VARIABLES}
    code = "import os, sys, shardgen.cli; print('numpy' in sys.modules, os.environ['OPENBLAS_NUM_THREADS'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "1"], done.stderr
