"""PNG encoding with zlib-ng: the container written here, the deflate stream by ``zlib_ng``.

A PNG whose rows all use filter type 0 (none) is a zlib stream of the rows, each preceded by a
zero byte, in an ``IDAT`` chunk between the ``IHDR`` header and the ``IEND`` marker, each chunk
closed by a CRC-32 (PNG specification, 3rd edition, sections 5 and 11). Line drawings on a flat
background compress best unfiltered, and zlib-ng (python-zlib-ng) deflates them about as fast
as ISA-L and ~3x faster than OpenCV's encoder (libpng + zlib ``Z_RLE``).

Why not ISA-L, which shardgen used before (revisions 1 and 2): the same pixels did not always
compress to the same bytes. Its level-1 output depends on the address its stream state sits at:
about one image in 10^4 came out a byte longer or shorter from one process to the next (real
sketches; fresh zeroed state moved in one process changed the bytes for ~4% of the addresses
tried; identical in every run with address-space randomisation off). Shards must be
byte-identical whatever ``--procs`` is and however often a build resumed, so the deflate must be
a function of the pixels alone. zlib-ng's is: ``scripts/bench`` encodes the same real sketches
in fresh processes and counts the distinct results, and ``tests/test_png.py`` re-encodes with
its state moved.

Images are always 8-bit. 1-bit grayscale for ``--no-antialias`` black-ink builds measured 38%
smaller and ~7% faster (counting the check that an image really has two levels), but Pillow opens
it as mode ``1``: its arrays are bool, not the uint8 pixels, and it resizes only by nearest
neighbour, so the same build would decode differently in a Pillow-based training pipeline."""

from __future__ import annotations

import struct

import cv2
import numpy as np
from zlib_ng import zlib_ng

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRAYSCALE, TRUECOLOR = 0, 2  # IHDR colour types: one grey sample, or R, G, B samples a pixel
WINDOW_BITS = 15  # a 32 KiB window: antialiased edges repeat from row to row
# Bumped whenever the same pixels start to compress to other bytes: part of a build's identity.
# 2: ISA-L's window followed --antialias. 3: zlib-ng, whose bytes depend on the pixels alone.
REVISION = 3


def strategy(antialiased: bool) -> int:
    """zlib-ng's strategy for a build's images: ``Z_RLE`` for hard-edged ones, the default else.

    Measured on 3,000 real sketches (omniglot, kanji) at 256 px, level 1: hard-edged images are
    long runs of two levels, which run-length matching packs into files as small as ISA-L's and
    OpenCV's (1,792 B against ISA-L's 1,791) at 39 us; the default strategy's files were 1.9x as
    large. Antialiased ones need matches across rows: the default strategy (59 us, files 14% larger
    than ISA-L's) beats ``Z_RLE`` (86 us, 4% larger); level 2 makes them 4% smaller than ISA-L's at
    twice the time (``--png-compression 2``).
    """
    return zlib_ng.Z_DEFAULT_STRATEGY if antialiased else zlib_ng.Z_RLE


def encoder_version() -> str:
    """The encoder that makes the PNG bytes, for a build's identity and its manifest."""
    return f"shardgen png {REVISION}, zlib-ng {zlib_ng.ZLIBNG_VERSION}"


def encode_png(image: np.ndarray, compression: int = 1, antialiased: bool = True) -> bytes:
    """Encode a uint8 image, (H, W) grayscale or (H, W, 3) in OpenCV's BGR order, as an 8-bit PNG.

    ``compression`` is ``--png-compression``, zlib-ng's level (0-9); ``antialiased`` picks the
    deflate strategy (see :func:`strategy`), never the pixels. PNG stores colour as
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
    deflate = zlib_ng.compressobj(compression, zlib_ng.DEFLATED, WINDOW_BITS, 8, strategy(antialiased))
    pixels = deflate.compress(rows) + deflate.flush()
    return b"".join([SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", pixels), _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, and the CRC-32 of type and data."""
    crc = zlib_ng.crc32(data, zlib_ng.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
