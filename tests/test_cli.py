"""The command line as a user meets it: clear one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from shardgen.npz import object_array
from tests.helpers import ROOT, Payload, run_cli, write_npz, write_raw_npz
from tests.test_interrupt import _can_mount_read_only


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
    assert_user_error(run_cli("build", sample_src, tmp_path / "o", "--size", "3"), "size")


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
    """Truncated, not a zip, wrong keys, non-array objects, foreign pickle: exit 2, one line, file and reason."""
    bad, marker = tmp_path / "bad", tmp_path / "payload-ran"
    bad.mkdir()
    reasons = _bad_files(bad, marker)
    src = tmp_path / "src"
    src.mkdir()
    (src / name).write_bytes((bad / name).read_bytes())
    result = run_cli("build", src, tmp_path / "out", "--procs", "1", "--size", "32", "--no-progress")
    assert_user_error(result, str(src / name), reasons[name])
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
    assert_user_error(run_cli(command, dst, *extra), str(dst))


def test_wids_index_that_is_a_list_is_a_verify_finding(build_copy):
    """A wids index holding a JSON list is reported as a problem naming it (exit 1, no traceback)."""
    (build_copy / "train.wids.json").write_text("[]")
    result = run_cli("verify", build_copy)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "train.wids.json: not a wids shard index" in result.stdout


def test_sample_into_a_path_under_a_file_is_a_one_line_error(tmp_path):
    """sample into a folder it cannot create (a file is in the way) is one line and exit 2."""
    (tmp_path / "file").write_text("x")
    assert_user_error(run_cli("sample", tmp_path / "file" / "npz"), "cannot write")


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
    assert_user_error(result, str(folder), "Read-only file system")
