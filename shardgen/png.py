"""PNG encoding with Intel's ISA-L: the container written here, the deflate stream by ``isal``.

A PNG whose rows all use filter type 0 (none) is a zlib stream of the rows, each preceded by a
zero byte, in an ``IDAT`` chunk between the ``IHDR`` header and the ``IEND`` marker, each chunk
closed by a CRC-32 (PNG specification, 3rd edition, sections 5 and 11). Line drawings on a flat
background compress best unfiltered with run-length matching; ISA-L does that 3-4x faster than
OpenCV's encoder (libpng + zlib ``Z_RLE``) for files as small (README, Performance).

Images are always 8-bit. 1-bit grayscale for ``--no-antialias`` black-ink builds measured 38%
smaller and ~7% faster (counting the check that an image really has two levels), but Pillow opens
it as mode ``1``: its arrays are bool, not the uint8 pixels, and it resizes only by nearest
neighbour, so the same build would decode differently in a Pillow-based training pipeline."""

from __future__ import annotations

import struct

import cv2
import isal
import numpy as np
from isal import igzip_lib, isal_zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRAYSCALE, TRUECOLOR = 0, 2  # IHDR colour types: one grey sample, or R, G, B samples a pixel
# The deflate window, as a power of two. 4 bytes match only runs of one grey level or one RGB
# pixel, as zlib's Z_RLE does: on sketches that is as small as OpenCV's files (a 32 KiB window gave
# files 4% smaller on real sketch-rnn drawings but 15-60% larger on hard-edged or simple ones).
WINDOW_BITS = 2


def isal_level(compression: int) -> int:
    """ISA-L's level for ``--png-compression`` (zlib's 0-9 scale): 0 -> 0, 1-9 -> 1.

    Level 0 is the fastest (~20% less time, files 1.6-2.6x larger). ISA-L's level 2 writes the same
    bytes as level 1 with this window and its level 3 took 3x as long for files 13-22% larger, so
    neither is used.
    """
    return min(compression, 1)


def encoder_version() -> str:
    """The encoder that makes the PNG bytes, for a build's identity and its manifest."""
    return f"isal {isal.__version__} (ISA-L {isal.ISAL_VERSION})"


def encode_png(image: np.ndarray, compression: int = 1) -> bytes:
    """Encode a uint8 image, (H, W) grayscale or (H, W, 3) in OpenCV's BGR order, as an 8-bit PNG.

    ``compression`` is ``--png-compression`` (0-9; see ``isal_level``). PNG stores colour as
    RGB, so a BGR image decodes with OpenCV to the same array and with Pillow to its RGB version,
    as with OpenCV's own encoder.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"can only encode uint8 (H, W) or (H, W, 3) images as png, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"cannot encode an empty {image.shape} image as png")
    channels = 1 if image.ndim == 2 else 3
    rows = np.empty((height, 1 + width * channels), np.uint8)
    rows[:, 0] = 0  # filter type: none
    if channels == 1:
        rows[:, 1:] = image
    else:  # OpenCV writes straight into the strided view; numpy's image[..., ::-1] copy is ~40x slower
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=rows[:, 1:].reshape(height, width, 3))
    color_type = GRAYSCALE if channels == 1 else TRUECOLOR
    # width, height, bit depth, colour type, compression (deflate), filter method (adaptive), no interlace
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    level = isal_level(compression)
    pixels = igzip_lib.compress(rows, level, igzip_lib.COMP_ZLIB, igzip_lib.MEM_LEVEL_DEFAULT, WINDOW_BITS)
    return b"".join([SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", pixels), _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, and the CRC-32 of type and data."""
    crc = isal_zlib.crc32(data, isal_zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
