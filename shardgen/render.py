"""The render stage: stroke-3 arrays become pixels, pixels become encoded image bytes.

Stroke-3 rows are ``(dx, dy, pen_lifted)``. Absolute positions are the cumulative sum of the
deltas, computed in float64 (no rounding of deltas, so no drift). The segment into point ``i`` is
inked iff point ``i - 1`` did not lift the pen, so the first row is a move from the origin. The
drawing is scaled uniformly to fit ``size * (1 - 2 * padding)``, centred, and drawn with OpenCV in
fixed point (``SHIFT`` fractional bits), i.e. with sub-pixel precision.
"""

from __future__ import annotations

import io
import zlib
from functools import lru_cache

import cv2
import numpy as np

from . import png
from .options import RenderOptions

# Fractional bits of the fixed-point coordinates handed to OpenCV: 1/256 px precision.
SHIFT = 8
# The opencv encoder's PNG row filter and zlib strategy. Line drawings on a flat background
# compress best unfiltered with run-length matching: measured on 256 px sketches, no filter + Z_RLE
# encodes 2-3x faster than libpng's default (trying every filter a row, default strategy) and gives
# ~20% smaller files. Pixels are unchanged (PNG is lossless); only the compressed bytes differ.
OPENCV_PNG_PARAMS = (
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_NONE,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_RLE,
)
# Stroke intensities never go lighter than this, so faded or random strokes stay visible on white.
LIGHTEST_INK = 200
# ``--color order`` fades by a fixed step per stroke index, as the Kaggle QuickDraw pipelines do,
# so an intensity means the same stroke index in every sketch; strokes past the tenth share the
# lightest level.
ORDER_STEPS = 10
ORDER_STEP = LIGHTEST_INK // ORDER_STEPS


def png_encoder_version(encoder: str) -> str:
    """The name and version of an ``options.PNG_ENCODERS`` entry, as the manifest records it."""
    return png.encoder_version() if encoder == "zlib-ng" else f"opencv {cv2.__version__}"


def drawn_width(thickness: int, antialias: bool) -> float:
    """How wide OpenCV really draws a line of ``thickness`` (ink per unit length, measured).

    OpenCV draws ``thickness >= 2`` as a band ``thickness + (thickness & 1)`` wide plus its edge
    pixels (about 1.5 px more antialiased, 1 px more without), and ``thickness = 1`` as a thin line.
    So its widths come in steps of two pixels, each 1 to 2 px wider than the number passed.
    """
    if thickness <= 1:
        return 1.35 if antialias else 1.0
    return thickness + (thickness & 1) + (1.5 if antialias else 1.0)


# Between OpenCV's 2 px steps, lean this much towards the wider antialiased line (whose edge pixels
# are only partly inked): at the default 256 px
# (6.4 px asked) that draws thickness 6, the value OpenCV-based QuickDraw pipelines use, instead of
# a 5.5 px line; at 64 px (1.6 px asked) it still draws the thin line, not a 3.5 px one.
WIDER_BIAS = 0.5


def dot_radius(width: float) -> int:
    """The radius, in ``SHIFT`` fixed point, of the disc that draws a one-point stroke ``width`` px wide."""
    return max(1 << (SHIFT - 1), int(round(width * (1 << SHIFT) / 2)))


def opencv_thickness(width: float, antialias: bool) -> int:
    """The thickness to pass to OpenCV so that lines come out as close to ``width`` px as it can."""
    candidates = [1, *range(2, int(width) + 4, 2)]
    target = width + (WIDER_BIAS if antialias else 0.0)
    return min(candidates, key=lambda t: (abs(drawn_width(t, antialias) - target), t))


def split_strokes(strokes: np.ndarray, size: int, padding: float) -> list[np.ndarray]:
    """Absolute, scaled, centred fixed-point polylines (int32, ``SHIFT`` bits) of one sketch.

    A stroke of one point is kept (as a dot) only when it is the open end of the sketch (pen still
    down, e.g. a sketch of a single point); a lone point followed by a pen lift inks nothing, as
    the segment rule says. A stroke that does not move (all its points equal) comes back as a
    single point: a dot.
    """
    fixed = fixed_points(strokes, size, padding)
    return [fixed[start:end] for start, end in _stroke_spans(strokes, fixed)]


def fixed_points(strokes: np.ndarray, size: int, padding: float) -> np.ndarray:
    """Every point's absolute, scaled, centred fixed-point position (int32, ``SHIFT`` bits)."""
    points = np.cumsum(strokes[:, :2], axis=0, dtype=np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = float((hi - lo).max())
    scale = size * (1.0 - 2.0 * padding) / extent if extent > 0 else 1.0
    # OpenCV puts pixel centres on integers, so the canvas spans [-0.5, size - 0.5]. Subtracting
    # the centre before scaling (rather than adding a precomputed offset) keeps far-off drawings
    # exact: no cancellation between two huge numbers.
    canvas = (points - (lo + hi) / 2.0) * scale + (size / 2.0 - 0.5)
    return np.rint(canvas * (1 << SHIFT)).astype(np.int32)


def _stroke_spans(strokes: np.ndarray, fixed: np.ndarray) -> list[tuple[int, int]]:
    """The ``[start, end)`` rows of each stroke that inks; a one-row span is a dot."""
    lifted = strokes[:, 2] != 0
    ends = np.flatnonzero(lifted) + 1
    # moves[i]: how often the position changed up to point i; equal at both ends means no move.
    moves = np.concatenate([[0], np.cumsum((fixed[1:] != fixed[:-1]).any(axis=1))])
    spans = []
    start = 0
    for end in [*ends.tolist(), len(strokes)]:
        open_end = end == len(strokes) and not lifted[end - 1]
        if end - start >= 2 or (end - start == 1 and open_end):
            spans.append((start, end if moves[end - 1] != moves[start] else start + 1))
        start = end
    return spans


def has_ink(strokes: np.ndarray) -> bool:
    """Whether a valid sketch inks anything (at least one segment or an open final dot)."""
    lifted = strokes[:, 2] != 0
    return bool((~lifted[:-1]).any()) or not lifted[-1]


@lru_cache(maxsize=4)
def _order_ramp(channels: int) -> np.ndarray:
    """256 colours for ``--color order``: grey levels, or a perceptual colour map for RGB."""
    levels = np.arange(256, dtype=np.uint8)
    if channels == 1:
        return levels.reshape(256, 1)
    return cv2.applyColorMap(levels.reshape(256, 1), cv2.COLORMAP_VIRIDIS).reshape(256, 3)


def _stroke_colors(count: int, options: RenderOptions, color_seed: int) -> list[tuple]:
    """One colour per stroke (BGR for 3 channels), before inversion."""
    if options.color == "random":
        rng = np.random.default_rng(color_seed)
        values = rng.integers(0, LIGHTEST_INK + 1, size=(count, options.channels))
        return [tuple(int(v) for v in row) for row in values]
    if options.color == "order":
        ramp = _order_ramp(options.channels)
        return [tuple(int(v) for v in ramp[min(index, ORDER_STEPS) * ORDER_STEP]) for index in range(count)]
    return [(0,) * options.channels] * count


def render_sketch(
    strokes: np.ndarray, options: RenderOptions = RenderOptions(), color_seed: int = 0, times: np.ndarray | None = None
) -> np.ndarray:
    """Rasterize one stroke-3 sketch to a uint8 image (H, W) or (H, W, 3, BGR order).

    ``color_seed`` picks the colours of ``color="random"``; the pipeline derives it from the build
    seed and the sample key so a rebuild gives the same colours. ``times`` (ms, one per row) is
    what ``color="time"`` shades by.
    """
    size, channels = options.size, options.channels
    shape = (size, size) if channels == 1 else (size, size, 3)
    image = np.full(shape, 255, dtype=np.uint8)
    if options.color == "time":
        _draw_by_time(image, strokes, times, options)
    else:
        _draw_by_stroke(image, strokes, options, color_seed)
    if options.invert:
        np.subtract(255, image, out=image)
    return image


def _draw_by_stroke(image: np.ndarray, strokes: np.ndarray, options: RenderOptions, color_seed: int) -> None:
    channels = options.channels
    polylines = split_strokes(strokes, options.size, options.padding)
    line_type = cv2.LINE_AA if options.antialias else cv2.LINE_8
    thickness = options.thickness
    dots = [len(polyline) == 1 for polyline in polylines]
    if options.color == "black" and not any(dots):
        if polylines:
            cv2.polylines(image, polylines, False, (0,) * channels, thickness, line_type, SHIFT)
    else:
        colors = _stroke_colors(len(polylines), options, color_seed)
        for polyline, color, dot in zip(polylines, colors, dots):
            if dot:
                _dot(image, polyline[0], color, options, line_type)
            else:
                cv2.polylines(image, [polyline], False, color, thickness, line_type, SHIFT)


def _dot(image: np.ndarray, point: np.ndarray, color: tuple, options: RenderOptions, line_type: int) -> None:
    # OpenCV's thin antialiased line draws a zero-length segment as two faint pixels (and a
    # one-point polyline as nothing), so a dot is a filled disc as wide as a line.
    cv2.circle(image, tuple(int(v) for v in point), dot_radius(options.width), color, -1, line_type, SHIFT)


def _draw_by_time(image: np.ndarray, strokes: np.ndarray, times: np.ndarray | None, options: RenderOptions) -> None:
    """``color="time"``: each segment shaded by the time of the point it starts from, the first black."""
    if times is None or len(times) != len(strokes):
        raise ValueError("color 'time' needs one time per point (raw QuickDraw ndjson or CSV input)")
    fixed = fixed_points(strokes, options.size, options.padding)
    elapsed = times - times.min()
    duration = float(elapsed.max())
    levels = np.rint(elapsed * (LIGHTEST_INK / duration) if duration > 0 else elapsed * 0).astype(np.intp)
    colors = [tuple(int(v) for v in row) for row in _order_ramp(options.channels)[levels]]
    line_type = cv2.LINE_AA if options.antialias else cv2.LINE_8
    points = [tuple(point) for point in fixed.tolist()]
    for start, end in _stroke_spans(strokes, fixed):
        if end - start == 1:
            _dot(image, fixed[start], colors[start], options, line_type)
        for i in range(start + 1, end):
            cv2.line(image, points[i - 1], points[i], colors[i - 1], options.thickness, line_type, SHIFT)


def encode_image(image: np.ndarray, options: RenderOptions = RenderOptions()) -> bytes:
    """Encode a rendered image in ``options.format``; ``npy`` stores RGB order for 3 channels."""
    fmt = options.format
    if fmt == "npy":
        return encode_npy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image)
    if fmt == "png" and options.png_encoder == "zlib-ng":
        return png.encode_png(image, options.png_compression, options.antialias)
    if fmt == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, options.png_compression, *OPENCV_PNG_PARAMS]
    elif fmt == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, options.quality]
    else:
        params = [cv2.IMWRITE_WEBP_QUALITY, options.quality]
    ok, data = cv2.imencode("." + fmt, image, params)
    if not ok:  # pragma: no cover - OpenCV only fails here on impossible parameters
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return data.tobytes()


def encode_npy(array: np.ndarray) -> bytes:
    """A plain ``.npy`` file (no pickle) of ``array``, with its dtype and shape."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def color_seed(seed: int, key: str) -> int:
    """A per-sample seed for random stroke colours: stable across runs, processes and platforms."""
    return (seed << 32) ^ zlib.crc32(key.encode())
