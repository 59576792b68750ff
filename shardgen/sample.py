"""Synthetic sketches in the exact sketch-rnn ``.npz`` format, for demos and tests.

One ``CATEGORY.npz`` per category with keys ``train``, ``valid`` and ``test``, each a 1-D numpy
object array of int16 ``(n, 3)`` stroke-3 arrays, exactly as the public sketch-rnn files hold them.
Shapes are simple and recognisable (circle, square, star, house...) with random scale, rotation,
position and hand jitter; the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

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


def _object_array(items: list[np.ndarray]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` like ``numpy.savez`` but with fixed zip timestamps (byte-reproducible)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=True)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())


def write_samples(dst: Path, categories: int = 6, per_split: int = 200, seed: int = 0) -> list[Path]:
    """Write ``categories`` synthetic ``CATEGORY.npz`` files with ``per_split`` sketches a split."""
    if not 1 <= categories <= 1000:
        raise ValueError(f"categories must be between 1 and 1000, got {categories}")
    if per_split < 1:
        raise ValueError(f"per-split must be at least 1, got {per_split}")
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, name in enumerate(category_names(categories)):
        rng = np.random.default_rng([seed, number])
        arrays = {split: _object_array([draw(name, rng) for _ in range(per_split)]) for split in SPLITS}
        path = dst / f"{name}.npz"
        write_npz(path, arrays)
        paths.append(path)
    return paths
