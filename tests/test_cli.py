"""The command line as a user meets it: clear one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

import numpy as np

from tests.helpers import Payload, object_array, run_cli, write_npz


def assert_user_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_src_is_a_one_line_error(tmp_path):
    """SRC that does not exist: exit 2, one line naming it."""
    assert_user_error(run_cli("build", tmp_path / "nope", tmp_path / "out"), "nope", "does not exist")


def test_src_without_npz_files_is_a_one_line_error(tmp_path):
    """SRC with no .npz files: exit 2, one line naming it."""
    assert_user_error(run_cli("build", tmp_path, tmp_path / "out"), str(tmp_path), "no .npz files")


def test_dst_that_is_a_file_is_a_one_line_error(sample_src, tmp_path):
    """DST that is a file: exit 2, one line naming it."""
    (tmp_path / "out").write_text("x")
    assert_user_error(run_cli("build", sample_src, tmp_path / "out"), "out", "must be a folder")


def test_unsafe_pickle_is_refused_naming_the_file_and_never_runs(tmp_path):
    """An .npz pickling a function call: exit 2, one line naming the file; the payload did not run."""
    src = tmp_path / "src"
    src.mkdir()
    marker = tmp_path / "payload-ran"
    sketch = np.array([[0, 0, 0], [5, 5, 1]], np.int16)
    write_npz(src / "evil.npz", train=object_array([sketch, Payload(marker)]))
    result = run_cli("build", src, tmp_path / "out", "--procs", "1", "--no-progress")
    assert_user_error(result, "evil.npz", "only numpy arrays are allowed")
    assert not marker.exists()


def test_sample_then_build_prints_a_summary(tmp_path):
    """The demo path: sample, build, exit 0 with a summary naming images and shards."""
    assert run_cli("sample", tmp_path / "npz", "--categories", "2", "--per-split", "10").returncode == 0
    result = run_cli("build", tmp_path / "npz", tmp_path / "out", "--procs", "1", "--size", "32", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "60 images" in result.stdout and "shards written 3" in result.stdout


def test_bad_option_value_is_a_one_line_error(sample_src, tmp_path):
    """An out-of-range option is a usage error, not a traceback."""
    assert_user_error(run_cli("build", sample_src, tmp_path / "o", "--size", "3"), "size")
