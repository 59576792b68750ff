"""shardgen preview: a labelled contact sheet of a build's samples, from the command line."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from shardgen.preview import GAP, LABEL_HEIGHT
from shardgen.sample import write_samples
from tests.helpers import ROOT, assert_one_line_error, read_split, run_cli

CELL = 32


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small shuffled build of three categories (circle, square, triangle), 32 px images."""
    src, dst = tmp_path_factory.mktemp("npz"), tmp_path_factory.mktemp("shards")
    write_samples(src, categories=3, per_split=12, seed=2)
    with ThreadPoolExecutor(1) as pool:
        build(src, dst, BuildOptions(render=RenderOptions(size=CELL), shard_size=10), executor=pool)
    return dst


def cells(sheet: np.ndarray, columns: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, label strip) of each cell of a contact sheet."""
    out = []
    for number in range(count):
        x, y = GAP + (number % columns) * (CELL + GAP), GAP + (number // columns) * (CELL + LABEL_HEIGHT + GAP)
        out.append((sheet[y : y + CELL, x : x + CELL], sheet[y + CELL : y + CELL + LABEL_HEIGHT, x : x + CELL]))
    return out


def test_preview_writes_a_labelled_grid_of_real_samples_by_class(demo, tmp_path):
    """9 samples of 3 classes: a 3x3 PNG grid, 3 per class in class order, each cell a labelled sample."""
    out = tmp_path / "grid.png"
    result = run_cli("preview", demo, "-o", out, "--split", "valid", "--count", "9", "--cell", str(CELL))
    assert result.returncode == 0, result.stderr
    assert f"wrote 9 valid samples to {out}" in result.stdout
    sheet = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert sheet.shape == (3 * (CELL + LABEL_HEIGHT + GAP) + GAP, 3 * (CELL + GAP) + GAP, 3)
    by_class: dict[int, list[np.ndarray]] = {}
    for sample in read_split(demo, "valid").values():
        image = cv2.imdecode(np.frombuffer(sample["png"], np.uint8), cv2.IMREAD_COLOR)
        by_class.setdefault(json.loads(sample["json"])["class"], []).append(image)
    for number, (image, label) in enumerate(cells(sheet, 3, 9)):
        assert any(np.array_equal(image, candidate) for candidate in by_class[number // 3]), number
        assert (image < 128).any()  # the drawing is there
        assert (label < 128).any() and (label == 255).any()  # dark text on a white strip


def test_preview_labels_differ_by_category_and_fit_their_cell():
    """Labels are drawn text, different for each category; a long name is cut to fit its cell."""
    from shardgen.preview import contact_sheet

    image = np.full((CELL, CELL, 3), 255, np.uint8)
    sheet = contact_sheet([("circle", image), ("square", image), ("a-very-long-category-name", image)], CELL, 3)
    (_, circle), (_, square), (_, long) = cells(sheet, 3, 3)
    assert (circle < 128).any() and not np.array_equal(circle, square)
    assert (long < 128).any() and (long[:, -1] == 255).all()  # text stops inside the cell


def test_preview_count_beyond_the_split_shows_what_there_is(demo, tmp_path):
    """Asking for more samples than a split holds shows all of them."""
    out = tmp_path / "all.png"
    result = run_cli("preview", demo, "-o", out, "--split", "test", "--count", "100", "--cell", str(CELL))
    assert result.returncode == 0, result.stderr
    assert "wrote 36 test samples" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--split", "nope"], "no split 'nope'"),
        (["--count", "0"], "--count must be at least 1"),
    ],
)
def test_preview_usage_errors_are_one_line(demo, tmp_path, args, fragment):
    """A bad split or count is one line on stderr and exit code 2."""
    result = run_cli("preview", demo, "-o", tmp_path / "x.png", *args)
    assert_one_line_error(result, fragment)


def test_preview_of_a_folder_without_a_build_is_a_one_line_error(tmp_path):
    """DST without manifest.json: exit 2, one line saying it is not a finished build."""
    result = run_cli("preview", tmp_path, "-o", tmp_path / "x.png")
    assert_one_line_error(result, "not a finished shardgen build")


def test_preview_shows_npy_and_colour_builds(tmp_path):
    """Samples stored as .npy with 3 channels show in their colours (RGB in the file, BGR in the sheet)."""
    src, dst = tmp_path / "npz", tmp_path / "shards"
    write_samples(src, categories=2, per_split=3, seed=0)
    options = BuildOptions(render=RenderOptions(size=CELL, channels=3, color="random", format="npy"), splits=("train",))
    with ThreadPoolExecutor(1) as pool:
        build(src, dst, options, executor=pool)
    out = tmp_path / "grid.png"
    assert run_cli("preview", dst, "-o", out, "--cell", str(CELL)).returncode == 0
    sheet = cv2.imread(str(out), cv2.IMREAD_COLOR)
    images = [cv2.cvtColor(np.load(io.BytesIO(s["npy"])), cv2.COLOR_RGB2BGR) for s in read_split(dst, "train").values()]
    for image, _ in cells(sheet, 3, 6):
        assert any(np.array_equal(image, candidate) for candidate in images)
        assert any(len(set(pixel)) > 1 for pixel in image.reshape(-1, 3).tolist())  # coloured ink, not grey


def test_label_from_a_non_utf8_file_name_is_drawn_without_crashing():
    """A category name with surrogates (from a non-UTF-8 file name) is drawn; OpenCV would segfault on it."""
    script = (
        "import numpy as np; from shardgen.preview import contact_sheet; "
        "sheet = contact_sheet([('bad\\udcff', np.full((32, 32, 3), 255, np.uint8))], 32); "
        "assert (sheet < 128).any()"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr)


@pytest.mark.parametrize(
    "name, magic", [("sheet.jpg", b"\xff\xd8\xff"), ("sheet.jpeg", b"\xff\xd8\xff"), ("sheet.png", b"\x89PNG")]
)
def test_preview_encodes_by_the_output_extension(demo, tmp_path, name, magic):
    """-o x.jpg writes JPEG bytes, -o x.png PNG bytes."""
    out = tmp_path / name
    result = run_cli("preview", demo, "-o", out, "--count", "4", "--cell", str(CELL))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(magic)


def test_preview_refuses_an_unknown_output_extension(demo, tmp_path):
    """-o x.txt is one line and exit 2, and writes nothing."""
    result = run_cli("preview", demo, "-o", tmp_path / "sheet.txt", "--count", "4")
    assert_one_line_error(result, "sheet.txt")
    assert not (tmp_path / "sheet.txt").exists()


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated"])
def test_preview_of_a_damaged_shard_is_a_one_line_error(demo, tmp_path, damage):
    """A shard that is missing, not a tar, or cut short is one line naming it (exit 2), not a traceback."""
    dst = tmp_path / "build"
    shutil.copytree(demo, dst, ignore=shutil.ignore_patterns(".shardgen"))
    shard = dst / "train-000000.tar"
    if damage == "deleted":
        shard.unlink()
    else:
        shard.write_bytes(b"garbage" * 2000 if damage == "garbage" else shard.read_bytes()[:5000])
    result = run_cli("preview", dst, "-o", tmp_path / "sheet.png", "--count", "36")
    assert_one_line_error(result, "train-000000.tar")
