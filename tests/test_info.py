"""shardgen info: the counts it prints come from the build (classes x splits, shards, skips)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from shardgen.info import class_counts
from shardgen.npz import object_array
from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from tests.helpers import ROOT, assert_one_line_error, counts_by_class, read_split, run_cli, write_npz


def rows(stdout: str) -> dict[str, list[str]]:
    """Table rows keyed by their first cell (split name or class index)."""
    return {cells[0]: cells[1:] for cells in (line.split() for line in stdout.splitlines()) if cells}


def test_info_prints_counts_per_class_and_split_and_shards(small_build):
    """The class table matches the .cls members in the shards; the split table counts shards and images."""
    result = run_cli("info", small_build)
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    for index, name in enumerate(["circle", "square", "triangle"]):
        assert table[str(index)] == [name, "20", "20", "20"]
    for split in ("train", "valid", "test"):
        assert counts_by_class(read_split(small_build, split)) == {0: 20, 1: 20, 2: 20}
        images, shards = table[split][:2]
        assert (images, shards) == ("60", "6")
    assert re.search(r"^render: size=32, .*format=png", result.stdout, re.M)
    assert "skipped: 0 sketch(es), 0 file(s)" in result.stdout


def test_info_lists_skipped_sketches(tmp_path):
    """Invalid sketches skipped by the build are counted and listed with file, split and index."""
    src = tmp_path / "src"
    src.mkdir()
    good = np.array([[0, 0, 0], [10, 10, 1]], np.int16)
    write_npz(src / "a.npz", train=object_array([good, np.zeros((0, 3)), good]))
    write_npz(src / "b.npz", train=object_array([good, good, good]))
    build(src, tmp_path / "out", BuildOptions(render=RenderOptions(size=16)), procs=1)
    result = run_cli("info", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert table["0"] == ["a", "2"] and table["1"] == ["b", "3"] and table["train"][:2] == ["5", "1"]
    assert "skipped: 1 sketch(es), 0 file(s)" in result.stdout
    assert "a.npz: train[1]:" in result.stdout


def older_build(small_build: Path, tmp_path: Path) -> Path:
    """A copy of ``small_build`` whose manifest predates per-class counts."""
    dst = tmp_path / "old"
    shutil.copytree(small_build, dst, ignore=shutil.ignore_patterns(".shardgen"))
    manifest = json.loads((dst / "manifest.json").read_text())
    for info in manifest["splits"].values():
        del info["class_counts"]
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_class_counts_fall_back_to_the_shards_for_older_manifests(small_build, tmp_path):
    """A manifest without per-class counts still gets them, counted from the shards."""
    dst = older_build(small_build, tmp_path)
    manifest = json.loads((dst / "manifest.json").read_text())
    assert class_counts(dst, manifest, "valid") == [20, 20, 20]


def test_info_on_a_folder_without_a_build_is_a_one_line_error(tmp_path):
    """info on a folder without manifest.json: exit 2, one line."""
    assert_one_line_error(run_cli("info", tmp_path), "no manifest.json")


def test_info_on_a_missing_folder_says_it_does_not_exist(tmp_path):
    """info on a path that does not exist says so, rather than that it holds no manifest.json."""
    assert_one_line_error(run_cli("info", tmp_path / "nowhere"), str(tmp_path / "nowhere"), "no such folder")


def test_info_prints_category_names_literally(tmp_path):
    """A category named with brackets (``[bold]x``) is printed as is, not read as rich markup."""
    src = tmp_path / "src"
    src.mkdir()
    good = np.array([[0, 0, 0], [10, 10, 1]], np.int16)
    write_npz(src / "[red]cat[x].npz", train=object_array([good]))
    build(src, tmp_path / "out", BuildOptions(render=RenderOptions(size=16)), procs=1)
    result = run_cli("info", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout)["0"] == ["[red]cat[x]", "1"]


def test_info_of_an_older_manifest_with_a_missing_shard_is_a_one_line_error(small_build, tmp_path):
    """Counting classes from the shards of an older manifest: a missing shard is one line naming it (exit 2)."""
    dst = older_build(small_build, tmp_path)
    (dst / "valid-000002.tar").unlink()
    result = run_cli("info", dst)
    assert_one_line_error(result, "valid-000002.tar")


# What reading a build must not load: the renderer, the async writer, the cluster and storage stacks.
BUILD_SIDE_IMPORTS = {"cv2", "aiofiles", "distributed", "fsspec", "zlib_ng"}


def test_info_imports_nothing_of_the_build_side(small_build):
    """``shardgen info`` prints its tables without importing OpenCV, aiofiles, Dask, fsspec or zlib-ng."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "shardgen", "info", str(small_build)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # importtime lines: "import time: self [us] | cumulative | <indent>package.module"
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "shardgen" in imported
    assert not imported & BUILD_SIDE_IMPORTS
