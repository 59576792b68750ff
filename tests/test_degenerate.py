"""Degenerate and hostile sketches, from the command line: drawn sensibly, or skipped and listed."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from shardgen.npz import object_array
from shardgen.options import RenderOptions
from shardgen.render import render_sketch
from tests.helpers import read_split, run_cli, write_npz

SIZE = 64
GOOD = np.array([[0, 0, 0], [30, 10, 0], [-10, 25, 1]], np.int16)
SMALL = np.array([[0, 0, 0], [37, 11, 0], [-5, 29, 1], [13, -7, 0], [3, 3, 1]], np.int32)
SKETCHES = {
    "good": GOOD,
    "single point": np.array([[12, -4, 0]], np.int16),
    "all points equal": np.array([[5, 5, 0], [0, 0, 0], [0, 0, 1]], np.int16),
    "every pen lifted": np.array([[0, 0, 1], [20, 5, 1], [-7, 9, 1]], np.int16),
    "single lifted point": np.array([[3, 3, 1]], np.int16),
    "beyond int16": SMALL * 100_000,  # positions up to 5e6: valid, just large
    "beyond int16 float": SMALL.astype(np.float64) * 1e9,
    "empty": np.zeros((0, 3), np.int16),
    "nan": np.array([[0, 0, 0], [np.nan, 1, 1]]),
    "inf": np.array([[0, 0, 0], [1, -np.inf, 1]]),
    "too far": np.array([[0, 0, 0], [1e13, 0, 1]]),
    "shape (n, 2)": np.zeros((4, 2), np.int16),
    "3-D": np.zeros((2, 4, 3), np.int16),
}
NAMES = list(SKETCHES)
INVALID = {
    "empty": "empty",
    "nan": "NaN",
    "inf": "infinite",
    "too far": "exceed",
    "shape (n, 2)": "not (n, 3)",
    "3-D": "not (n, 3)",
}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """One file holding every case, in the order of ``NAMES``, in the train split."""
    folder = tmp_path_factory.mktemp("degenerate")
    write_npz(folder / "odd.npz", train=object_array(list(SKETCHES.values())))
    return folder


@pytest.fixture(scope="module")
def built(src, tmp_path_factory):
    """A CLI build of the file; returns the CLI result, the output folder and images by case name."""
    dst = tmp_path_factory.mktemp("out")
    result = run_cli("build", src, dst, "--procs", "1", "--no-progress", "--size", str(SIZE), "--no-shuffle")
    assert result.returncode == 0, result.stderr
    images = {}
    for sample in read_split(dst, "train").values():
        index = json.loads(sample["json"])["index"]
        images[NAMES[index]] = cv2.imdecode(np.frombuffer(sample["png"], np.uint8), cv2.IMREAD_GRAYSCALE)
    return result, dst, images


def centroid(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(image < 128)
    return rows.mean(), cols.mean()


def test_single_point_is_a_dot_not_a_blank(built):
    """A one-point sketch (pen down) renders a dark dot in the centre."""
    image = built[2]["single point"]
    assert image.min() == 0 and 1 <= (image < 128).sum() <= 16
    assert np.allclose(centroid(image), (SIZE - 1) / 2, atol=1)


def test_all_points_equal_is_a_centred_dot(built):
    """Zero extent (every point the same) is a dot in the centre, not a blank or a crash."""
    image = built[2]["all points equal"]
    assert image.min() == 0 and np.allclose(centroid(image), (SIZE - 1) / 2, atol=1)


def test_every_pen_lifted_is_blank_and_counted(built):
    """Nothing to ink: blank images, counted as blank in the manifest and the summary table."""
    result, dst, images = built
    assert (images["every pen lifted"] == 255).all() and (images["single lifted point"] == 255).all()
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["splits"]["train"]["blank"] == 2
    row = next(line for line in result.stdout.splitlines() if line.startswith("train"))
    assert row.split()[-1] == "2"


@pytest.mark.parametrize("name", ["beyond int16", "beyond int16 float"])
def test_coordinates_far_beyond_int16_render_like_small_ones(built, name):
    """Positions in the millions or billions are scaled like any drawing: same picture as at small scale."""
    images = built[2]
    small = render_sketch(SMALL, RenderOptions(size=SIZE))
    assert np.array_equal(images[name], render_sketch(SKETCHES[name], RenderOptions(size=SIZE)))
    assert np.abs(images[name].astype(int) - small).max() <= 2


def test_invalid_sketches_are_skipped_and_listed_with_a_reason(built):
    """Empty, NaN, infinite, too-far and wrongly shaped sketches are left out and listed in the manifest."""
    result, dst, images = built
    manifest = json.loads((dst / "manifest.json").read_text())
    listed = {(s["source"], s["split"], NAMES[s["index"]]): s["reason"] for s in manifest["skipped"]}
    assert set(listed) == {("odd.npz", "train", name) for name in INVALID}
    for name, fragment in INVALID.items():
        assert fragment in listed[("odd.npz", "train", name)]
    assert set(images) == set(NAMES) - set(INVALID)
    assert manifest["splits"]["train"]["count"] == len(NAMES) - len(INVALID)


def test_build_summary_says_how_many_were_skipped(built):
    """The summary line on stdout gives the skip count; stderr warns about the file."""
    result = built[0]
    assert f"skipped {len(INVALID)}" in result.stdout
    assert f"odd.npz: skipped {len(INVALID)} invalid sketch(es)" in result.stderr


def test_on_error_fail_stops_at_the_first_invalid_sketch(src, tmp_path):
    """--on-error fail: exit 2 with one line naming the file, split, index and reason; no shards."""
    result = run_cli("build", src, tmp_path, "--procs", "1", "--no-progress", "--on-error", "fail")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    first = NAMES.index("empty")
    assert lines[-1] == f"shardgen: error: odd.npz: train[{first}]: empty sketch (no points)"
    assert not list(tmp_path.glob("*.tar")) and not (tmp_path / "manifest.json").exists()


def test_on_error_skip_sketches_is_the_default_and_records_itself(built):
    """The manifest records the error policy the build used."""
    manifest = json.loads((built[1] / "manifest.json").read_text())
    assert manifest["options"]["on_error"] == "skip-sketches"
