"""Drawings appended to the store as they arrive; the arrays load like any .npy and narrow when exact."""

from __future__ import annotations

import numpy as np
import pytest

from shardgen.formats.drawing import Drawing
from shardgen.formats.packing import ExtrasReader, NpyAppender, SplitPacker
from shardgen.store import array_path


def test_an_appended_npy_loads_with_numpy(tmp_path):
    """Rows appended in pieces give one .npy of their concatenation, under its name only once closed."""
    path = tmp_path / "rows.npy"
    out = NpyAppender(path, np.float64, 3)
    out.append(np.ones((2, 3)))
    out.append(np.zeros((1, 3)))
    assert not path.exists()
    out.close()
    assert np.load(path).tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0]]


def drawing(index: int, rows: list, times=None) -> Drawing:
    return Drawing(index, np.array(rows, dtype=np.float64), times, {"key_id": str(index), "word": "cat"})


@pytest.mark.parametrize("rows, dtype", [([[3, 4, 0], [1, -2, 1]], np.int16), ([[3.5, 4, 0], [1, -2, 1]], np.float64)])
def test_strokes_are_int16_when_exact_else_float64(tmp_path, rows, dtype):
    """Integer drawings are stored as int16 like .npz sketches; real-valued ones keep float64 precision."""
    packer = SplitPacker(tmp_path, "train", 0)
    packer.add(drawing(0, rows))
    packer.close()
    strokes = np.load(array_path(tmp_path, "train", 0, "strokes"))
    assert strokes.dtype == dtype and strokes.tolist() == rows


def test_workers_fetch_strokes_metadata_and_times_by_position(tmp_path):
    """Each drawing's rows, source index, metadata and times come back by its position in the split."""
    packer = SplitPacker(tmp_path, "train", 0)
    packer.add(drawing(4, [[1, 1, 1]], np.array([0.0])))
    packer.add(drawing(9, [[2, 2, 0], [1, 1, 1]], np.array([0.0, 30.0])))
    assert packer.close() is True
    reader = ExtrasReader(tmp_path, "train")
    strokes, index = reader.sketch(0, 1)
    assert (strokes.tolist(), index) == ([[2, 2, 0], [1, 1, 1]], 9)
    assert reader.meta(0, 1) == b'"key_id":"9","word":"cat"'
    assert reader.times(0, 1).tolist() == [0.0, 30.0]


def test_a_split_without_times_stores_none(tmp_path):
    """Simplified drawings have no times: no times file, and the reader says so."""
    packer = SplitPacker(tmp_path, "train", 0)
    packer.add(drawing(0, [[1, 1, 1]]))
    assert packer.close() is False
    assert ExtrasReader(tmp_path, "train").times(0, 0) is None
