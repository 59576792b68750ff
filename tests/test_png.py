"""shardgen's PNG writer: every decoder a training job uses gives back the rendered pixels."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from webdataset import autodecode
from zlib_ng import zlib_ng

from shardgen import png
from shardgen.options import RenderOptions
from shardgen.render import encode_image, render_sketch
from shardgen.sample import SHAPES, draw

VARIANTS = [(c, a, shape) for c in (1, 3) for a in (True, False) for shape in SHAPES]


def sketch(channels: int, antialias: bool, shape: str = "circle", size: int = 64) -> tuple[np.ndarray, bytes]:
    """A sample shape rendered (colours vary per stroke with 3 channels) and encoded by encode_image."""
    color = "random" if channels == 3 else "black"
    options = RenderOptions(size=size, channels=channels, antialias=antialias, color=color)
    image = render_sketch(draw(shape, np.random.default_rng(1)), options, color_seed=7)
    return image, encode_image(image, options)


def as_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


def opencv_decode(data: bytes) -> np.ndarray:
    """libpng through OpenCV, as stored (no conversion), back in BGR order for colour."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def pillow_decode(data: bytes) -> np.ndarray:
    """Pillow's own decoder, without conversion: the array of the mode the file declares (L or RGB)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def webdataset_decode(data: bytes, channels: int) -> np.ndarray:
    """webdataset's decode('l8') / decode('rgb8'), as a training pipeline calls it."""
    decoder = autodecode.Decoder([autodecode.imagehandler("l8" if channels == 1 else "rgb8")])
    return decoder({"__key__": "k", "png": data})["png"]


def chunks(data: bytes) -> list[tuple[bytes, bytes, int]]:
    """(type, data, stored CRC) of every chunk after the signature."""
    assert data[:8] == png.SIGNATURE
    out, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        out.append((kind, body, crc))
        position += 12 + length
    return out


@pytest.mark.parametrize(("channels", "antialias", "shape"), VARIANTS)
def test_opencv_decodes_to_the_rendered_array(channels, antialias, shape):
    """OpenCV (libpng) decodes each sample shape, as stored, to exactly the rendered array (BGR for colour)."""
    image, data = sketch(channels, antialias, shape)
    decoded = opencv_decode(data)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, image)


@pytest.mark.parametrize(("channels", "antialias", "shape"), VARIANTS)
def test_pillow_decodes_to_the_rendered_array(channels, antialias, shape):
    """Pillow opens each sample shape as L or RGB, whose array is the rendered one (in RGB order)."""
    image, data = sketch(channels, antialias, shape)
    decoded = pillow_decode(data)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, as_rgb(image))


@pytest.mark.parametrize(("channels", "antialias", "shape"), VARIANTS)
def test_webdataset_decodes_to_the_rendered_array(channels, antialias, shape):
    """webdataset's l8 / rgb8 decode gives the rendered array (in RGB order) for each sample shape."""
    image, data = sketch(channels, antialias, shape)
    decoded = webdataset_decode(data, channels)
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, as_rgb(image))


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 70),
    channels=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**32 - 1),
    flat=st.booleans(),
    compression=st.integers(0, 9),
)
def test_random_images_of_random_sizes_decode_exactly(height, width, channels, seed, flat, compression):
    """Any uint8 image, noise or runs of a few levels, at any --png-compression: both decoders give it back."""
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, 3)
    image = rng.choice(np.array([0, 128, 255], np.uint8), shape) if flat else rng.integers(0, 256, shape, np.uint8)
    data = png.encode_png(image, compression)
    assert np.array_equal(opencv_decode(data).reshape(shape), image)
    assert np.array_equal(pillow_decode(data).reshape(shape), as_rgb(image))


@pytest.mark.parametrize("channels", [1, 3])
def test_container_has_the_three_chunks_with_valid_crcs_and_header(channels):
    """Signature, then IHDR (size, 8-bit, grey or RGB, no interlace), one IDAT of filter-0 rows, IEND."""
    image, data = sketch(channels, True, size=48)
    found = chunks(data)
    assert [kind for kind, _, _ in found] == [b"IHDR", b"IDAT", b"IEND"]
    for kind, body, crc in found:
        assert crc == zlib.crc32(kind + body)
    width, height, depth, color_type, compression, filter_method, interlace = struct.unpack(">IIBBBBB", found[0][1])
    assert (width, height, depth, compression, filter_method, interlace) == (48, 48, 8, 0, 0, 0)
    assert color_type == (png.GRAYSCALE if channels == 1 else png.TRUECOLOR)
    rows = np.frombuffer(zlib.decompress(found[1][1]), np.uint8).reshape(48, 1 + 48 * channels)
    assert (rows[:, 0] == 0).all() and np.array_equal(rows[:, 1:], as_rgb(image).reshape(48, -1))
    with Image.open(io.BytesIO(data)) as opened:
        opened.verify()  # Pillow checks every chunk's CRC


def test_a_wrong_crc_is_caught_by_pillow():
    """The CRC check above can fail: Pillow refuses a file whose IDAT CRC is off by one bit."""
    _, data = sketch(1, True, size=48)
    (length,) = struct.unpack(">I", data[33:37])  # IDAT follows the 8-byte signature and 25-byte IHDR chunk
    crc_at = 33 + 8 + length
    broken = data[:crc_at] + bytes([data[crc_at] ^ 1]) + data[crc_at + 1 :]
    with pytest.raises(SyntaxError, match="broken PNG"), Image.open(io.BytesIO(broken)) as opened:
        opened.verify()


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4), np.uint16),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3, 1), np.uint8),
        np.zeros((0, 4), np.uint8),
    ],
    ids=["uint16", "4 channels", "4 dimensions", "empty"],
)
def test_images_it_cannot_store_are_refused(image):
    """Anything but a non-empty uint8 grey or BGR image is refused with ValueError, not written wrong."""
    with pytest.raises(ValueError, match="png"):
        png.encode_png(image)


def test_png_compression_0_stores_the_rows_uncompressed():
    """--png-compression is zlib's level: at 0 the IDAT holds the rows as they are (stored blocks)."""
    options = RenderOptions(size=64, png_compression=0)
    image = render_sketch(draw("circle", np.random.default_rng(1)), options)
    idat = chunks(encode_image(image, options))[1][1]
    assert len(idat) >= 64 * 65  # 64 rows of a filter byte and 64 pixels, not compressed


def test_a_higher_png_compression_gives_smaller_files():
    """Level 9 files are smaller than level 1's on sample shapes (antialiased), the pixels the same."""
    rng = np.random.default_rng(3)
    images = [render_sketch(draw(shape, rng), RenderOptions()) for shape in SHAPES]
    sizes = {level: sum(len(png.encode_png(image, level)) for image in images) for level in (1, 9)}
    assert sizes[9] < sizes[1]


def test_the_same_pixels_give_the_same_bytes_wherever_the_encoder_state_lies():
    """Encoding an image again, with other allocations moving where the encoder's state lies, gives the same bytes.

    (ISA-L, the encoder before, gave other bytes for about one real sketch in 10^4 from one process to
    the next, following the address of its state; see png.py.)
    """
    rng = np.random.default_rng(4)
    images = [render_sketch(draw(shape, rng), RenderOptions()) for shape in SHAPES for _ in range(4)]
    first = [png.encode_png(image) for image in images]
    for round in range(1, 40):
        junk = [bytearray(1000 * round * (k + 1)) for k in range(3)]  # moves what malloc hands out next
        assert [png.encode_png(image) for image in images] == first
        del junk


def test_hard_edged_files_are_no_larger_than_the_opencv_encoders():
    """At 256 px, hard-edged sketches (run-length matching) are no larger than OpenCV's (filter none, Z_RLE)."""
    options = RenderOptions(antialias=False)
    rng = np.random.default_rng(2)
    images = [render_sketch(draw(shape, rng), options) for shape in SHAPES]
    ours = sum(len(encode_image(image, options)) for image in images)
    opencv = RenderOptions(antialias=False, png_encoder="opencv")
    assert ours <= sum(len(encode_image(image, opencv)) for image in images)


@pytest.mark.parametrize("antialias", [True, False], ids=["antialiased", "hard-edged"])
def test_the_deflate_strategy_follows_antialias(antialias):
    """The IDAT is zlib-ng's stream of the unfiltered rows: default strategy antialiased, run-length hard-edged."""
    image, data = sketch(1, antialias)
    rows = np.hstack([np.zeros((image.shape[0], 1), np.uint8), image])
    expected = zlib_ng.compressobj(1, zlib_ng.DEFLATED, 15, 8, png.strategy(antialias))
    assert chunks(data)[1][1] == expected.compress(rows) + expected.flush()
    assert png.strategy(antialias) == (zlib_ng.Z_DEFAULT_STRATEGY if antialias else zlib_ng.Z_RLE)
