"""QuickDraw strokes become stroke-3 rows; anything that is not a usable drawing is refused with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shardgen.formats.drawing import Malformed, meta_fragment, read_meta, to_stroke3


def test_simplified_strokes_become_stroke3_offsets_with_pen_lifts():
    """Absolute points become offsets from the previous point; each stroke's last point lifts the pen."""
    rows, times = to_stroke3([[[10, 20], [5, 5]], [[30, 30, 40], [0, 10, 10]]])
    expected = [[10, 5, 0], [10, 0, 1], [10, -5, 0], [0, 10, 0], [10, 0, 1]]
    assert rows.tolist() == expected
    assert times is None


def test_raw_strokes_keep_float_positions_and_times():
    """Raw ``[x, y, t]`` strokes keep real-valued positions and give one time per row."""
    rows, times = to_stroke3([[[1.5, 2.25], [0.5, 0.5], [0, 17]], [[3.0], [1.0], [250]]])
    assert np.cumsum(rows[:, :2], axis=0).tolist() == [[1.5, 0.5], [2.25, 0.5], [3.0, 1.0]]
    assert times.tolist() == [0, 17, 250]


@pytest.mark.parametrize(
    "drawing, reason",
    [
        ([], "no strokes"),
        ("strokes", "not a list of strokes"),
        ([[[], []]], "stroke 0 is empty"),
        ([[[1, 2, 3], [1, 2]]], "different lengths"),
        ([[[1, 2], [1, 2], [0]]], "different lengths"),
        ([[[1, 256], [1, 2]]], "integers 0-255"),
        ([[[-1, 2], [1, 2]]], "integers 0-255"),
        ([[[1.5, 2], [1, 2]]], "integers 0-255"),
        ([[["1", 2], [1, 2]]], "not a number"),
        ([[[True, 2], [1, 2]]], "not a number"),
        ([[[1, 2], [1, 2]], [[1, 2], [1, 2], [0, 1]]], "stroke 1 has 3 items"),
        ([[1, 2]], "must be [x, y] or [x, y, t]"),
        ([[[float("nan"), 2], [1, 2], [0, 1]]], "not finite"),
        ([[[1e13, 2], [1, 2], [0, 1]]], "coordinates exceed"),
        ([[[1, 2], [1, 2], [0, float("inf")]]], "time is not finite"),
    ],
)
def test_unusable_drawings_are_malformed_with_a_reason(drawing, reason):
    """Empty strokes, x/y of different lengths, out-of-range or non-numeric values each say why."""
    with pytest.raises(Malformed, match=reason.replace("[", r"\[").replace("]", r"\]")):
        to_stroke3(drawing)


def test_key_id_stays_an_exact_string():
    """A 64-bit key_id keeps every digit (a float would round it)."""
    meta = read_meta({"key_id": "18446744073709551615", "word": "cat", "recognized": True})
    assert meta["key_id"] == "18446744073709551615"
    assert json.loads("{" + meta_fragment(meta).decode() + "}")["key_id"] == "18446744073709551615"


def test_a_record_without_key_id_is_malformed():
    """key_id decides the split, so a record without one cannot be used."""
    with pytest.raises(Malformed, match="missing key_id"):
        read_meta({"word": "cat"})
