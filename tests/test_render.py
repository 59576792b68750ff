"""Rendering semantics on hand-made sketches with known pixels."""

from __future__ import annotations

import numpy as np

from shardgen.render import RenderOptions, has_ink, render_sketch

OPTIONS = RenderOptions(size=100, padding=0.1, line_width=2)
INK = 128  # a pixel darker than this counts as inked


def ink(image: np.ndarray) -> np.ndarray:
    return image < INK


def test_first_row_is_a_move_not_a_line():
    """A sketch whose first row jumps far from the origin draws no line from the origin."""
    sketch = np.array([[500, 0, 0], [100, 0, 1]], np.int16)  # one horizontal segment
    image = render_sketch(sketch, OPTIONS)
    rows = np.flatnonzero(ink(image).any(axis=1))
    cols = np.flatnonzero(ink(image).any(axis=0))
    assert rows.max() - rows.min() <= 3  # only the segment's own thickness
    assert cols.min() >= 8 and cols.max() <= 91  # segment spans the margin box, nothing beyond


def test_lifted_pen_leaves_no_line():
    """The move after a pen lift is not inked: two bars, nothing on the diagonal between them."""
    sketch = np.array([[0, 0, 0], [100, 0, 1], [-100, 100, 0], [100, 0, 1]], np.int16)
    image = render_sketch(sketch, OPTIONS)
    assert ink(image[10, 20:80]).all() and ink(image[89, 20:80]).all()
    assert not ink(image[30:70, 30:70]).any()  # the diagonal move would cross here


def test_drawing_is_centred_and_fills_the_margin_box():
    """A square's ink is centred and reaches the margin (10 px) on all sides, within the line width."""
    square = np.array([[0, 0, 0], [40, 0, 0], [0, 40, 0], [-40, 0, 0], [0, -40, 1]], np.int16)
    image = render_sketch(square, OPTIONS)
    rows = np.flatnonzero(ink(image).any(axis=1))
    cols = np.flatnonzero(ink(image).any(axis=0))
    assert abs((rows.min() + rows.max()) / 2 - 49.5) <= 0.5
    assert abs((cols.min() + cols.max()) / 2 - 49.5) <= 0.5
    assert 8 <= rows.min() <= 10 and 89 <= rows.max() <= 91
    assert 8 <= cols.min() <= 10 and 89 <= cols.max() <= 91


def test_longer_side_fills_and_aspect_is_kept():
    """A wide rectangle spans the margin box horizontally and keeps its 4:1 aspect."""
    rect = np.array([[0, 0, 0], [80, 0, 0], [0, 20, 0], [-80, 0, 0], [0, -20, 1]], np.int16)
    image = render_sketch(rect, OPTIONS)
    rows = np.flatnonzero(ink(image).any(axis=1))
    cols = np.flatnonzero(ink(image).any(axis=0))
    assert 8 <= cols.min() <= 10 and 89 <= cols.max() <= 91
    assert abs((rows.max() - rows.min()) - 20) <= 3  # 80 px wide -> 20 px tall


def test_no_drift_over_a_thousand_small_deltas():
    """1,000 unit steps scale to 0.08 px each; summed in float they still span the whole box."""
    steps = np.zeros((1001, 3), np.int16)
    steps[1:, 0] = 1
    steps[-1, 2] = 1
    image = render_sketch(steps, OPTIONS)
    cols = np.flatnonzero(ink(image).any(axis=0))
    assert 8 <= cols.min() <= 10 and 89 <= cols.max() <= 91
    assert ink(image[49:51, 10:90]).any(axis=0).all()  # unbroken


def test_float_and_int_inputs_render_alike():
    """The same sketch as int16 and float64 gives the same pixels."""
    sketch = np.array([[3, 4, 0], [50, 10, 0], [-20, 30, 1]], np.int16)
    assert np.array_equal(render_sketch(sketch, OPTIONS), render_sketch(sketch.astype(np.float64), OPTIONS))


def test_has_ink_follows_the_segment_rule():
    """Ink needs a segment after a pen-down point, or an open final point (a dot)."""
    assert has_ink(np.array([[0, 0, 0], [5, 5, 1]]))
    assert not has_ink(np.array([[0, 0, 1], [5, 5, 1]]))
    assert has_ink(np.array([[0, 0, 0]]))


def test_default_is_256_grayscale_black_on_white():
    """Defaults: 256x256 uint8, white background, black ink."""
    image = render_sketch(np.array([[0, 0, 0], [10, 10, 1]], np.int16))
    assert image.shape == (256, 256) and image.dtype == np.uint8
    assert image[0, 0] == 255 and image.min() == 0
