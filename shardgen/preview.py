"""A contact sheet of a finished build: rendered samples in a grid, each labelled with its category.

It reads the shards the way a consumer would (stdlib ``tarfile``, OpenCV or numpy decoders), so it
also shows that a dataset decodes, not only that it was written.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from . import atomic
from .errors import InputError, UsageError, reason
from .reading import decode_image, load_manifest, shard_samples
from .write import output_error

LABEL_HEIGHT = 14  # pixels under each cell for its category name
GAP = 2  # pixels between cells
BACKGROUND = (160, 160, 160)  # grey, so white and black (inverted) cells both stand out
FONT = cv2.FONT_HERSHEY_SIMPLEX
# What a missing, damaged or foreign shard raises while its samples are read.
SHARD_ERRORS = (OSError, EOFError, tarfile.TarError, KeyError, ValueError, TypeError, AttributeError)
# How the sheet is encoded, by the output's extension.
ENCODERS = {".png": [cv2.IMWRITE_PNG_COMPRESSION, 9], ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95]}
ENCODERS[".jpeg"] = ENCODERS[".jpg"]


def label_text(category: str) -> str:
    """``category`` as OpenCV's Hershey fonts can draw it: ASCII, anything else as ``?``.

    Those fonts have ASCII glyphs only, and OpenCV crashes on the surrogates that a non-UTF-8 file
    name leaves in a category name.
    """
    return category.encode("ascii", "replace").decode("ascii")


def decode(ext: str, data: bytes) -> np.ndarray:
    """One sample's image as a BGR uint8 array, whatever its format or channel count."""
    image = decode_image(data, ext)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGBA2BGR if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)


def pick_samples(dst: Path, manifest: dict, split: str, count: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``count`` (category, image) pairs, about the same number from each class, by class.

    Shards are read in order and a class stops taking samples once it has its share, so a
    shuffled build reads a few samples more than ``count`` and an unshuffled one reads on until
    every class has its share.
    """
    classes = manifest["classes"]
    share = math.ceil(count / max(1, len(classes)))
    taken: dict[int, list[tuple[str, np.ndarray]]] = defaultdict(list)
    total = 0
    for shard in manifest["splits"][split]["shards"]:
        try:
            for _, sample in shard_samples(Path(dst) / shard["file"]):
                class_index = int(sample.pop("cls"))
                if len(taken[class_index]) >= share:
                    continue
                category = json.loads(sample.pop("json"))["category"]
                ((ext, data),) = sample.items()
                taken[class_index].append((category, decode(ext, data)))
                total += 1
                if total >= count:
                    break
        except SHARD_ERRORS as error:
            raise InputError(
                f"cannot read {shard['file']} ({reason(error)}); shardgen verify tells what is wrong", dst
            ) from None
        if total >= count:
            break
    return [item for class_index in sorted(taken) for item in taken[class_index]][:count]


def contact_sheet(samples: list[tuple[str, np.ndarray]], cell: int, columns: int | None = None) -> np.ndarray:
    """A BGR grid of ``cell`` px images, each with its label underneath."""
    columns = columns or max(1, math.ceil(math.sqrt(len(samples))))
    rows = max(1, math.ceil(len(samples) / columns))
    step_x, step_y = cell + GAP, cell + LABEL_HEIGHT + GAP
    sheet = np.full((rows * step_y + GAP, columns * step_x + GAP, 3), BACKGROUND, np.uint8)
    scale = 0.35
    for number, (label, image) in enumerate(samples):
        x, y = GAP + (number % columns) * step_x, GAP + (number // columns) * step_y
        interpolation = cv2.INTER_AREA if image.shape[0] > cell else cv2.INTER_NEAREST
        sheet[y : y + cell, x : x + cell] = cv2.resize(image, (cell, cell), interpolation=interpolation)
        sheet[y + cell : y + cell + LABEL_HEIGHT, x : x + cell] = 255
        text = label_text(label)
        while len(text) > 1 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > cell - 2:
            text = text[:-1]
        cv2.putText(sheet, text, (x + 1, y + cell + LABEL_HEIGHT - 4), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def preview(dst: Path, output: Path, split: str = "train", count: int = 64, cell: int = 64) -> int:
    """Write a labelled grid of up to ``count`` samples of ``split``, as PNG or JPEG by the output's
    extension; returns how many it shows."""
    dst, output = Path(dst), Path(output)
    encoder = ENCODERS.get(output.suffix.lower())
    if encoder is None:
        raise UsageError(
            f"cannot tell the image format from {output.suffix or 'no extension'}; use .png or .jpg", output
        )
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    if not 16 <= cell <= 1024:
        raise UsageError(f"--cell must be between 16 and 1024 pixels, got {cell}")
    manifest = load_manifest(dst)
    if split not in manifest["splits"]:
        raise UsageError(f"the build has no split {split!r}; it has {', '.join(manifest['splits'])}", dst)
    samples = pick_samples(dst, manifest, split, count)
    if not samples:
        raise UsageError(f"split {split!r} holds no samples", dst)
    sheet = contact_sheet(samples, cell)
    if (sheet[..., 0] == sheet[..., 1]).all() and (sheet[..., 1] == sheet[..., 2]).all():
        sheet = sheet[..., 0]  # a grayscale build makes a grayscale sheet, a third of the size
    ok, data = cv2.imencode(output.suffix.lower(), sheet, encoder)
    if not ok:  # pragma: no cover - PNG or JPEG encoding of a uint8 BGR image does not fail
        raise RuntimeError("OpenCV could not encode the contact sheet")
    try:
        atomic.write_bytes(output, data.tobytes())
    except OSError as error:
        raise output_error(error, output) from None
    return len(samples)
