"""PNG encoding with Intel's ISA-L: the container written here, the deflate stream by ``isal``.

A PNG whose rows all use filter type 0 (none) is a zlib stream of the rows, each preceded by a
zero byte, in an ``IDAT`` chunk between the ``IHDR`` header and the ``IEND`` marker, each chunk
closed by a CRC-32 (PNG specification, 3rd edition, sections 5 and 11). Line drawings on a flat
background compress best unfiltered; ISA-L deflates them 3-4x faster than OpenCV's encoder
(libpng + zlib ``Z_RLE``), into files 4% smaller on real sketches (README, Performance).

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
# The deflate window, as a power of two, chosen by the build's --antialias. Antialiased edges repeat
# from row to row, which only a 32 KiB window reaches: measured on real sketch-rnn drawings (omniglot,
# kanji; 28-512 px; black, order, random and 3-channel colours) its files are 2-22% smaller than
# OpenCV's (4% at 256 px, black). Hard-edged images are long runs of two levels, which a 4-byte
# window matches as zlib's Z_RLE does (as small as OpenCV's files), while the long window made them
# 4-86% larger. (The long window loses too on thick antialiased lines at small sizes, +6% at 8 px
# lines on 64 px, and on shardgen's synthetic sample shapes, +2-13%.)
ANTIALIASED_WINDOW_BITS = 15
HARD_EDGED_WINDOW_BITS = 2
# Bumped whenever the same pixels start to compress to other bytes: part of a build's identity.
# 2: the window follows --antialias (was 4 bytes for every image).
REVISION = 2


def isal_level(compression: int) -> int:
    """ISA-L's level for ``--png-compression`` (zlib's 0-9 scale): 0 -> 0, 1-9 -> 1.

    Level 0 is the fastest (~30% less time, files 1.1-2.6x larger). On real sketches at 256 px,
    ISA-L's level 2 gave files within 0.2% of level 1's (the same bytes with the 4-byte window) and
    its level 3 took 3x as long for files no smaller, so neither is used.
    """
    return min(compression, 1)


def window_bits(antialias: bool) -> int:
    """The deflate window (a power of two) for a build's images; see ``ANTIALIASED_WINDOW_BITS``."""
    return ANTIALIASED_WINDOW_BITS if antialias else HARD_EDGED_WINDOW_BITS


def encoder_version() -> str:
    """The encoder that makes the PNG bytes, for a build's identity and its manifest."""
    return f"shardgen png {REVISION}, isal {isal.__version__} (ISA-L {isal.ISAL_VERSION})"


def encode_png(image: np.ndarray, compression: int = 1, antialiased: bool = True) -> bytes:
    """Encode a uint8 image, (H, W) grayscale or (H, W, 3) in OpenCV's BGR order, as an 8-bit PNG.

    ``compression`` is ``--png-compression`` (0-9; see ``isal_level``); ``antialiased`` picks the
    deflate window (see ``window_bits``), never the pixels. PNG stores colour as
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
    pixels = igzip_lib.compress(rows, level, igzip_lib.COMP_ZLIB, igzip_lib.MEM_LEVEL_DEFAULT, window_bits(antialiased))
    return b"".join([SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", pixels), _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, and the CRC-32 of type and data."""
    crc = isal_zlib.crc32(data, isal_zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
