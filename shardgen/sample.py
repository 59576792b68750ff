"""Synthetic sketches in the exact sketch-rnn ``.npz`` format, for demos and tests.

One ``CATEGORY.npz`` per category with keys ``train``, ``valid`` and ``test``, each a 1-D numpy
object array of int16 ``(n, 3)`` stroke-3 arrays, exactly as the public sketch-rnn files hold them.
Shapes are simple and recognisable (circle, square, star, house...) with random scale, rotation,
position and hand jitter; the same seed gives byte-identical files.

The QuickDraw formats (``ndjson``, ``ndjson-raw``, ``bin``, ``csv``) hold the same drawings,
train then valid then test in one file per category, fitted into QuickDraw's 0-255 box as Google
simplified its drawings (aligned to 0, scaled to a largest value of 255, rounded), with made-up
metadata; ``ndjson-raw`` keeps the positions before rounding and adds times. ``fit=True`` writes
those fitted drawings as ``.npz``, so every format holds exactly the same points.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .formats import writers
from .npz import object_array
from .read import SPLITS

Strokes = list[np.ndarray]  # absolute (x, y) polylines, unit-ish size, y pointing down


def _polygon(points: list[tuple[float, float]], closed: bool = True) -> np.ndarray:
    array = np.array(points + points[:1] if closed else points, dtype=np.float64)
    return _densify(array, 6)


def _densify(polyline: np.ndarray, per_edge: int) -> np.ndarray:
    """Insert points along each edge so jitter bends edges the way a hand does."""
    out = [polyline[0]]
    for a, b in zip(polyline[:-1], polyline[1:]):
        for t in np.linspace(0, 1, per_edge + 1)[1:]:
            out.append(a + (b - a) * t)
    return np.array(out)


def _circle(n: int = 28) -> Strokes:
    t = np.linspace(0, 2 * np.pi, n + 1)
    return [np.stack([np.cos(t), np.sin(t)], axis=1)]


def _square() -> Strokes:
    return [_polygon([(-1, -1), (1, -1), (1, 1), (-1, 1)])]


def _triangle() -> Strokes:
    return [_polygon([(0, -1), (1, 0.8), (-1, 0.8)])]


def _star() -> Strokes:
    angles = [-np.pi / 2 + i * 4 * np.pi / 5 for i in range(5)]
    return [_polygon([(math.cos(a), math.sin(a)) for a in angles])]


def _spiral() -> Strokes:
    t = np.linspace(0, 6 * np.pi, 60)
    r = t / t[-1]
    return [np.stack([r * np.cos(t), r * np.sin(t)], axis=1)]


def _house() -> Strokes:
    body = _polygon([(-1, 0), (1, 0), (1, 1.2), (-1, 1.2)])
    roof = _polygon([(-1.2, 0), (0, -1.1), (1.2, 0)], closed=False)
    door = _polygon([(-0.25, 1.2), (-0.25, 0.5), (0.25, 0.5), (0.25, 1.2)], closed=False)
    return [body, roof, door]


def _smiley() -> Strokes:
    face = _circle()[0]
    t = np.linspace(0.2 * np.pi, 0.8 * np.pi, 12)
    mouth = np.stack([0.55 * np.cos(t), 0.55 * np.sin(t)], axis=1)
    eye = lambda x: np.array([[x, -0.35], [x, -0.2]])  # noqa: E731
    return [face, eye(-0.35), eye(0.35), mouth]


def _zigzag() -> Strokes:
    return [_polygon([(-1 + i * 0.4, -0.5 if i % 2 else 0.5) for i in range(6)], closed=False)]


def _cross() -> Strokes:
    return [_polygon([(-1, -1), (1, 1)], closed=False), _polygon([(1, -1), (-1, 1)], closed=False)]


def _arrow() -> Strokes:
    shaft = _polygon([(-1, 0), (1, 0)], closed=False)
    head = _polygon([(0.4, -0.5), (1, 0), (0.4, 0.5)], closed=False)
    return [shaft, head]


SHAPES: dict[str, Callable[[], Strokes]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "spiral": _spiral,
    "house": _house,
    "smiley": _smiley,
    "zigzag": _zigzag,
    "cross": _cross,
    "arrow": _arrow,
}


def category_names(count: int) -> list[str]:
    """The first ``count`` shapes; beyond ten, shapes repeat with a numbered suffix."""
    names = list(SHAPES)
    return [names[i % len(names)] + (f"-{i // len(names)}" if i >= len(names) else "") for i in range(count)]


def draw(shape: str, rng: np.random.Generator) -> np.ndarray:
    """One jittered drawing of ``shape`` as an int16 stroke-3 array."""
    strokes = SHAPES[shape.split("-")[0]]()
    angle = rng.uniform(-0.3, 0.3)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    scale = rng.uniform(60, 120) * np.array([1.0, rng.uniform(0.8, 1.2)])
    origin = rng.uniform(-40, 40, size=2)
    rows = []
    for stroke in strokes:
        points = stroke @ rotation.T * scale + origin
        points += rng.normal(0, 2.0, size=points.shape)
        pen = np.zeros((len(points), 1))
        pen[-1] = 1
        rows.append(np.hstack([points, pen]))
    absolute = np.vstack(rows)
    absolute[:, :2] = np.rint(absolute[:, :2])  # round positions, then take exact deltas
    deltas = absolute.copy()
    deltas[1:, :2] = np.diff(absolute[:, :2], axis=0)
    return deltas.astype(np.int16)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` like ``numpy.savez`` but with fixed zip timestamps (byte-reproducible)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=True)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())


def write_samples(
    dst: Path, categories: int = 6, per_split: int = 200, seed: int = 0, format: str = "npz", fit: bool = False
) -> list[Path]:
    """Write ``categories`` synthetic files in ``format`` with ``per_split`` sketches a split."""
    if format not in SAMPLE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(SAMPLE_FORMATS)}, got {format!r}")
    if not 1 <= categories <= 1000:
        raise ValueError(f"--categories must be between 1 and 1000, got {categories}")
    if per_split < 1:
        raise ValueError(f"--per-split must be at least 1, got {per_split}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, name in enumerate(category_names(categories)):
        rng = np.random.default_rng([seed, number])
        sketches = {split: [draw(name, rng) for _ in range(per_split)] for split in SPLITS}
        if format == "npz":
            if fit:
                sketches = {split: [_fitted_stroke3(s) for s in items] for split, items in sketches.items()}
            path = dst / f"{name}.npz"
            write_npz(path, {split: object_array(items) for split, items in sketches.items()})
        else:
            metadata = np.random.default_rng([seed, number, 1])  # apart, so the drawings stay as in .npz
            drawings = [
                _quickdraw(sketch, name, metadata, raw=format == "ndjson-raw")
                for split in SPLITS
                for sketch in sketches[split]
            ]
            writer, pattern = QUICKDRAW_WRITERS[format]
            path = dst / pattern.format(name)
            writer(path, drawings)
        paths.append(path)
    return paths


SAMPLE_FORMATS = ("npz", "ndjson", "ndjson-raw", "bin", "csv")
QUICKDRAW_WRITERS = {
    "ndjson": (writers.write_ndjson, "full_simplified_{}.ndjson"),
    "ndjson-raw": (writers.write_ndjson, "full_raw_{}.ndjson"),
    "bin": (writers.write_bin, "{}.bin"),
    "csv": (writers.write_csv, "{}.csv"),
}
COUNTRIES = ("US", "GB", "DE", "BR", "JP", "IN")
QUICKDRAW_MAX = 255


def _fitted(sketch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute positions fitted into QuickDraw's box (before rounding), and each stroke's end row."""
    points = np.cumsum(sketch[:, :2], axis=0, dtype=np.float64)
    points -= points.min(axis=0)
    largest = points.max()
    if largest > 0:
        points *= QUICKDRAW_MAX / largest
    return points, np.flatnonzero(sketch[:, 2]) + 1


def _fitted_stroke3(sketch: np.ndarray) -> np.ndarray:
    """The sketch as its QuickDraw-fitted, rounded positions, in stroke-3 (int16, exact)."""
    points, _ = _fitted(sketch)
    rounded = np.rint(points)
    rows = sketch.astype(np.int16)
    rows[0, :2] = rounded[0]
    rows[1:, :2] = np.diff(rounded, axis=0)
    return rows


def _quickdraw(sketch: np.ndarray, word: str, rng: np.random.Generator, raw: bool) -> writers.SampleDrawing:
    """One sketch as QuickDraw strokes (rounded, or raw with times) and made-up metadata."""
    points, ends = _fitted(sketch)
    starts = [0, *ends[:-1].tolist()]
    if raw:
        # Raw files hold real-valued positions and milliseconds since the first point.
        strokes = [np.round(points[a:b], 3) for a, b in zip(starts, ends)]
        steps = rng.integers(8, 40, size=len(points)).astype(np.float64)
        steps[starts] += 250  # the pen travels between strokes
        steps[0] = 0
        clock = np.cumsum(steps).astype(np.int64)
        times = [clock[a:b] for a, b in zip(starts, ends)]
    else:
        strokes = [np.rint(points[a:b]).astype(np.int64) for a, b in zip(starts, ends)]
        times = None
    meta = {
        "key_id": int(rng.integers(2**53, 2**63)),  # beyond a double's integers, as real ids may be
        "countrycode": COUNTRIES[int(rng.integers(len(COUNTRIES)))],
        "recognized": bool(rng.random() < 0.9),
        "timestamp": int(rng.integers(1_483_228_800, 1_490_918_400)),  # early 2017, as the dataset
        "microseconds": int(rng.integers(1_000_000)),
        "word": word,
    }
    return strokes, times, meta
