"""Rendering semantics on hand-made sketches with known pixels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shardgen.options import RenderOptions
from shardgen.render import drawn_width, encode_image, has_ink, render_sketch
from shardgen.sample import SHAPES, draw

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


@pytest.mark.parametrize("size", [28, 64, 256])
def test_single_pen_down_point_is_a_visible_dot(size):
    """A sketch of one pen-down point is a dark dot in the centre, even with a 1 px line."""
    image = render_sketch(np.array([[7, -3, 0]], np.int16), RenderOptions(size=size))
    rows, cols = np.nonzero(ink(image))
    assert image.min() == 0 and len(rows) >= 1
    assert abs(rows.mean() - (size - 1) / 2) <= 1 and abs(cols.mean() - (size - 1) / 2) <= 1


def test_far_off_drawing_renders_like_one_at_the_origin():
    """Centring before scaling: a drawing 1e9 units away gives the same pixels as at the origin."""
    sketch = np.array([[0, 0, 0], [37, 11, 0], [-5, 29, 1], [13, -7, 0], [3, 3, 1]], np.float64)
    far = sketch.copy()
    far[0, :2] = [1e9, -1e9]
    assert np.array_equal(render_sketch(sketch, OPTIONS), render_sketch(far, OPTIONS))


def _horizontal_line_width(width: float, antialias: bool) -> float:
    """Ink per unit length across the middle of a long horizontal line, in pixels."""
    line = np.array([[0, 0, 0], [1000, 0, 1]], np.int16)
    image = render_sketch(line, RenderOptions(size=200, line_width=width, antialias=antialias))
    return float((255 - image[:, 80:120].astype(np.float64)).sum() / 255 / 40)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("width", [1, 1.6, 2.5, 3.2, 4, 6.4, 9, 12.8])
def test_line_width_is_the_drawn_width_within_a_pixel(width, antialias):
    """--line-width W draws lines W px wide within 1.5 px (OpenCV widths step by 2 px and antialiased
    lines lean half a pixel towards the wider step)."""
    assert abs(_horizontal_line_width(width, antialias) - width) <= 1.5


def test_default_line_width_is_2_5_percent_of_the_size_at_least_1():
    """Default width: 2.5% of the size, at least 1 px; the manifest records the width asked for."""
    assert RenderOptions(size=256).width == 6.4 and RenderOptions(size=28).width == 1.0
    assert RenderOptions(size=256).to_dict()["line_width"] == 6.4
    assert abs(_horizontal_line_width(RenderOptions(size=200).width, True) - 5.0) <= 1.25


# Property-based: random valid sketches made of strokes of at least two points (so every point is inked).
stroke = st.lists(st.tuples(st.integers(-300, 300), st.integers(-300, 300)), min_size=2, max_size=8)


def to_stroke3(strokes: list[list[tuple[int, int]]]) -> np.ndarray:
    rows = []
    for points in strokes:
        for number, (x, y) in enumerate(points):
            rows.append([x, y, int(number == len(points) - 1)])
    array = np.array(rows, np.int64)
    array[1:, :2] = np.diff(array[:, :2], axis=0)
    return array.astype(np.int16)


@settings(max_examples=100, deadline=None)
@given(
    strokes=st.lists(stroke, min_size=1, max_size=4),
    size=st.sampled_from([32, 48, 64]),
    padding=st.sampled_from([0.1, 0.15, 0.2]),
    antialias=st.booleans(),
)
def test_property_ink_fits_touches_the_margin_and_is_deterministic(strokes, size, padding, antialias):
    """Any valid sketch: ink stays off the canvas edge, reaches the margin on its longer side, and
    rendering twice gives the same bytes."""
    sketch = to_stroke3(strokes)
    points = np.cumsum(sketch[:, :2].astype(np.float64), axis=0)
    extent = points.max(axis=0) - points.min(axis=0)
    assume(extent.max() > 0)
    options = RenderOptions(size=size, padding=padding, antialias=antialias)
    image = render_sketch(sketch, options)
    assert np.array_equal(image, render_sketch(sketch, options))
    assert encode_image(image, options) == encode_image(render_sketch(sketch, options), options)

    half = drawn_width(options.thickness, antialias) / 2
    assert size * padding > half + 1  # so ink never reaches the edge ring below
    ring = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    assert (ring == 255).all()
    axis = 0 if extent[0] >= extent[1] else 1  # 0: x is the longer side (columns)
    inked = np.flatnonzero((image < 255).any(axis=axis))  # any ink: a 1 px antialiased stub is pale
    low, high = size * padding - 0.5, size * (1 - padding) - 0.5  # margin box, pixel-centre coordinates
    assert abs(inked.min() - low) <= half + 1.5
    assert abs(inked.max() - high) <= half + 1.5


def reference_render(sketch: np.ndarray, size: int, width: float, padding: float, supersample: int = 8) -> np.ndarray:
    """An independent renderer: Pillow lines with round caps on an 8x canvas, box-filtered down."""
    from PIL import Image, ImageDraw

    points = np.cumsum(sketch[:, :2].astype(np.float64), axis=0)
    lo, hi = points.min(axis=0), points.max(axis=0)
    scale = size * (1 - 2 * padding) / (hi - lo).max()
    canvas = ((points - (lo + hi) / 2) * scale + size / 2) * supersample  # continuous, pixel edges on integers
    big = Image.new("L", (size * supersample, size * supersample), 255)
    draw = ImageDraw.Draw(big)
    radius = width * supersample / 2
    for i in range(1, len(sketch)):
        if sketch[i - 1, 2] == 0:
            a, b = tuple(canvas[i - 1]), tuple(canvas[i])
            draw.line([a, b], fill=0, width=int(round(width * supersample)))
            for x, y in (a, b):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=0)
    return np.asarray(big.resize((size, size), Image.BOX))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [64, 256])
def test_matches_an_independent_reference_renderer(size, shape):
    """Against a supersampled Pillow renderer: same place (ink centroid within 1 px), similar ink."""
    sketch = draw(shape, np.random.default_rng(5))
    options = RenderOptions(size=size)
    ours = 255 - render_sketch(sketch, options).astype(np.float64)
    theirs = 255 - reference_render(sketch, size, options.width, options.padding).astype(np.float64)
    rows, cols = np.indices(ours.shape)
    centroids = [((image * rows).sum() / image.sum(), (image * cols).sum() / image.sum()) for image in (ours, theirs)]
    # OpenCV draws whole-pixel widths (here up to 16% more ink than the reference's exact width), which
    # moves the centroid of a lopsided outline (triangle, arrow) by up to ~0.8 px over these sizes.
    assert np.abs(np.subtract(*centroids)).max() <= 1.0
    assert 0.7 <= ours.sum() / theirs.sum() <= 1.3
    mask_ours, mask_theirs = ours > 127, theirs > 127
    assert (mask_ours & mask_theirs).sum() / (mask_ours | mask_theirs).sum() >= 0.7
