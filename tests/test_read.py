"""The read stage: file discovery, category names, adapters and sketch validation."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from shardgen.errors import InputError, UsageError
from shardgen.npz import object_array, read_npz
from shardgen.read import category_name, discover, read_sketchrnn_npz, stroke_dtype, validate_sketch
from shardgen.sample import write_samples
from tests.helpers import run_cli, write_npz


@pytest.mark.parametrize("name", ["cat.npz", "sketchrnn_cat.npz", "sketchrnn_cat.full.npz", "cat.full.npz"])
def test_category_names_strip_prefix_and_full(name):
    """The file-name conventions of the public sketch-rnn files all map to the bare category."""
    assert category_name(Path(name)) == "cat"


def test_discover_sorts_by_category(tmp_path):
    """Files are sorted by category, whatever their prefixes."""
    for name in ["sketchrnn_zebra.npz", "apple.npz", "sketchrnn_bee.full.npz", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert [s.category for s in discover(tmp_path)] == ["apple", "bee", "zebra"]


def test_discover_refuses_missing_empty_and_file_inputs(tmp_path):
    """Missing SRC, SRC without .npz files and SRC that is a file are usage errors naming the path."""
    with pytest.raises(UsageError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(UsageError, match="no .npz files"):
        discover(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="not a file"):
        discover(tmp_path / "f")


def test_duplicate_categories_are_refused(tmp_path):
    """cat.npz and sketchrnn_cat.npz in one folder would make one class out of two files."""
    (tmp_path / "cat.npz").write_bytes(b"")
    (tmp_path / "sketchrnn_cat.npz").write_bytes(b"")
    with pytest.raises(UsageError, match="both hold category 'cat'"):
        discover(tmp_path)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64])
def test_accepted_stroke_dtypes_keep_their_dtype(tmp_path, dtype):
    """int16/int32/float32/float64 stroke arrays are read and stored without loss."""
    sketch = np.array([[1, 2, 0], [3, 4, 1]], dtype)
    path = write_npz(tmp_path / "a.npz", train=object_array([sketch]))
    loaded = read_sketchrnn_npz(path, ["train"])["train"]
    assert validate_sketch(loaded[0]) is None
    assert stroke_dtype(list(loaded)) == np.dtype(dtype)


def test_file_without_split_keys_is_refused(tmp_path):
    """An .npz with none of train/valid/test names the file and the expected keys."""
    path = write_npz(tmp_path / "odd.npz", data=np.zeros(3))
    with pytest.raises(InputError, match="odd.npz.*train, valid, test"):
        read_sketchrnn_npz(path, ["train"])


@pytest.mark.parametrize(
    "sketch, reason",
    [
        (np.zeros((0, 3), np.int16), "empty"),
        (np.zeros((4, 2), np.int16), "not (n, 3)"),
        (np.zeros((2, 2, 3), np.int16), "not (n, 3)"),
        (np.array([[np.nan, 0, 0]]), "NaN"),
        (np.array([[np.inf, 0, 0]]), "NaN or infinite"),
        (np.array([[1e13, 0, 0]]), "exceed"),
        ("a string", "not an array"),
        (np.array([["a", "b", "c"]]), "not numeric"),
    ],
)
def test_invalid_sketches_get_a_reason(sketch, reason):
    """Each kind of invalid sketch is named, so skips can be reported."""
    assert reason in validate_sketch(sketch)


def test_sketches_pickled_as_lists_of_rows_are_accepted():
    """Some tools store each sketch as a list of [dx, dy, pen] rows; they read as arrays."""
    from shardgen.read import as_sketch_array

    sketch = as_sketch_array([[1, 2, 0], [3, 4, 1]])
    assert validate_sketch(sketch) is None and sketch.tolist() == [[1, 2, 0], [3, 4, 1]]
    assert "not an array" in validate_sketch(as_sketch_array([[1, 2, 0], [3]]))


def test_npy_format_version_3_members_load(tmp_path):
    """Members written in .npy format 3.0 (utf-8 headers) are read like 1.0 and 2.0."""
    import io
    import zipfile

    from shardgen.npz import read_npz

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.arange(6, dtype=np.int16).reshape(2, 3), version=(3, 0))
    with zipfile.ZipFile(tmp_path / "v3.npz", "w") as archive:
        archive.writestr("train.npy", buffer.getvalue())
    assert read_npz(tmp_path / "v3.npz")["train"].tolist() == [[0, 1, 2], [3, 4, 5]]


def _make_special(kind: str, path: Path) -> None:
    """Put a dangling symlink, a FIFO, a directory or a device at ``path``."""
    if kind == "dangling symlink":
        path.symlink_to(path.parent / "gone.npz")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")


SPECIAL = {"dangling symlink": "a dangling symlink", "fifo": "a FIFO", "directory": "a directory", "device": "a device"}


@pytest.mark.parametrize("kind", sorted(SPECIAL))
def test_npz_that_is_not_a_regular_file_is_an_input_error_without_blocking(tmp_path, kind):
    """A *.npz that is a dangling symlink, FIFO, directory or device is an InputError naming it; a FIFO never blocks."""
    path = tmp_path / "odd.npz"
    _make_special(kind, path)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(InputError, read_npz, path).value))
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # unblock the reader so the test run can end, then fail
        with open(path, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert "odd.npz: cannot read: " in str(outcome[0]) and SPECIAL[kind] in str(outcome[0])


def test_build_lists_inputs_that_are_not_regular_files_as_skipped(tmp_path):
    """With --on-error skip, each non-regular *.npz is listed in skipped_files, not silently dropped."""
    src = tmp_path / "src"
    write_samples(src, categories=1, per_split=3)
    for number, kind in enumerate(sorted(SPECIAL)):
        _make_special(kind, src / f"odd{number}.npz")
    result = run_cli("build", src, tmp_path / "out", "--on-error", "skip", "--size", "16", "--procs", "1", timeout=120)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(item["source"] for item in manifest["skipped_files"]) == [f"odd{n}.npz" for n in range(4)]


@pytest.mark.parametrize("name", [".full.npz", "sketchrnn_.npz", "sketchrnn_.full.npz"])
def test_file_name_without_a_category_is_refused(tmp_path, name):
    """A file whose name leaves an empty category (``.full.npz``) is a usage error naming it."""
    (tmp_path / name).write_bytes(b"")
    (tmp_path / "cat.npz").write_bytes(b"")
    with pytest.raises(UsageError, match=rf"{re.escape(name)}.*no category name"):
        discover(tmp_path)


@pytest.mark.parametrize(
    "name, category",
    [
        ("full_simplified_cat.ndjson", "cat"),
        ("full_raw_cat.ndjson", "cat"),
        ("cat.ndjson", "cat"),
        ("cat.ndjson.gz", "cat"),
        ("cat.bin", "cat"),
        ("cat.csv", "cat"),
        ("The Eiffel Tower.csv", "The Eiffel Tower"),
        ("full_simplified_The Eiffel Tower.ndjson", "The Eiffel Tower"),
    ],
)
def test_quickdraw_file_names_give_their_category(name, category):
    """Google's and Kaggle's download names give the bare category, spaces kept."""
    assert category_name(Path(name)) == category


def test_discover_finds_every_input_format(tmp_path):
    """.npz, .ndjson, .ndjson.gz, .bin and .csv files are inputs; other files are not."""
    for name in ("a.npz", "b.ndjson", "c.ndjson.gz", "d.bin", "e.csv", "f.txt", "g.gz"):
        (tmp_path / name).write_bytes(b"")
    assert [source.name for source in discover(tmp_path)] == ["a.npz", "b.ndjson", "c.ndjson.gz", "d.bin", "e.csv"]
