"""Every image format decodes, with the decoders a training job uses, to the rendered pixels."""

from __future__ import annotations

import io
import tarfile

import cv2
import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from shardgen import tar
from shardgen.options import RenderOptions
from shardgen.render import encode_image, render_sketch

SKETCH = np.array([[0, 0, 0], [40, 5, 0], [-10, 30, 1], [25, -20, 0], [5, 5, 1]], np.int16)
SIZE = 48
CASES = [(fmt, channels) for fmt in ("png", "jpg", "webp", "npy") for channels in (1, 3)]
LOSSLESS = ("png", "npy")


def rendered(fmt: str, channels: int) -> tuple[np.ndarray, bytes]:
    """The rendered image (BGR for 3 channels, as OpenCV holds it) and its encoding."""
    options = RenderOptions(size=SIZE, channels=channels, color="random" if channels == 3 else "order", format=fmt)
    image = render_sketch(SKETCH, options, color_seed=3)
    return image, encode_image(image, options)


def as_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image


def close(decoded: np.ndarray, expected: np.ndarray, fmt: str) -> bool:
    """Lossless formats: exactly equal; lossy: the same picture (small mean error)."""
    if fmt in LOSSLESS:
        return np.array_equal(decoded, expected)
    return np.abs(decoded.astype(int) - expected.astype(int)).mean() < 6


@pytest.mark.parametrize("fmt, channels", CASES)
def test_opencv_decodes_to_the_rendered_array(fmt, channels):
    """OpenCV (imdecode, or numpy for .npy) gives (H, W) or (H, W, 3) uint8 equal to the render."""
    image, data = rendered(fmt, channels)
    if fmt == "npy":
        decoded = (
            cv2.cvtColor(np.load(io.BytesIO(data)), cv2.COLOR_RGB2BGR) if channels == 3 else np.load(io.BytesIO(data))
        )
    else:
        flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        # webp has no grayscale mode: it stores three equal channels (IMREAD_UNCHANGED sees 3).
        unchanged = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert unchanged.shape == ((SIZE, SIZE, 3) if fmt == "webp" or channels == 3 else (SIZE, SIZE))
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert close(decoded, image, fmt)


@pytest.mark.parametrize("fmt, channels", [case for case in CASES if case[0] != "npy"])
def test_pillow_decodes_to_the_rendered_array(fmt, channels):
    """Pillow opens png/jpg/webp as L (grayscale) or RGB with the rendered pixels."""
    image, data = rendered(fmt, channels)
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.size == (SIZE, SIZE)
        assert opened.mode == ("RGB" if channels == 3 or fmt == "webp" else "L")
        decoded = np.asarray(opened.convert("RGB" if channels == 3 else "L"))
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert close(decoded, as_rgb(image), fmt)


def test_npy_is_a_plain_array_for_numpy_load():
    """.npy holds the raw uint8 array (RGB order for 3 channels), loadable without pickle."""
    image, data = rendered("npy", 3)
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    assert loaded.dtype == np.uint8 and np.array_equal(loaded, as_rgb(image))


@pytest.mark.parametrize("fmt, channels", CASES)
def test_webdataset_decodes_each_format(tmp_path, fmt, channels):
    """webdataset's decode('l8'/'rgb8') gives the rendered pixels for every format; .npy decodes as is."""
    image, data = rendered(fmt, channels)
    shard = tmp_path / "s.tar"
    members = tar.member(f"k0.{fmt}", data) + tar.member("k0.cls", b"7")
    shard.write_bytes(members + tar.end_of_archive(len(members)))
    with tarfile.open(shard) as archive:  # a valid tar by the standard library's reading too
        assert archive.getnames() == [f"k0.{fmt}", "k0.cls"]
    spec = "l8" if channels == 1 else "rgb8"
    (sample,) = list(wds.WebDataset(str(shard), shardshuffle=False).decode(spec))
    decoded = sample[fmt]
    assert sample["cls"] == 7
    assert isinstance(decoded, np.ndarray) and decoded.dtype == np.uint8
    assert decoded.shape == image.shape
    assert close(decoded, as_rgb(image), fmt)


@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_quality_trades_size_for_fidelity(fmt):
    """--quality: a lower jpg/webp quality gives smaller files that differ more from the render."""
    image = render_sketch(SKETCH, RenderOptions(size=128))
    low = encode_image(image, RenderOptions(size=128, format=fmt, quality=10))
    high = encode_image(image, RenderOptions(size=128, format=fmt, quality=95))
    error = [np.abs(cv2.imdecode(np.frombuffer(d, np.uint8), 0).astype(int) - image).mean() for d in (low, high)]
    assert len(low) < len(high) and error[0] > error[1]


def test_png_compression_changes_size_not_pixels():
    """--png-compression: another zlib level, the same pixels."""
    image = render_sketch(SKETCH, RenderOptions(size=128))
    fast = encode_image(image, RenderOptions(size=128, png_compression=0))
    small = encode_image(image, RenderOptions(size=128, png_compression=9))
    assert len(small) < len(fast)
    assert np.array_equal(
        cv2.imdecode(np.frombuffer(small, np.uint8), 0), cv2.imdecode(np.frombuffer(fast, np.uint8), 0)
    )


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "npy"])
def test_a_build_in_each_format_streams_through_webdataset(tmp_path, fmt):
    """A real build with --format FMT: webdataset reads every sample back as a decoded image and class."""
    from concurrent.futures import ThreadPoolExecutor

    from shardgen.options import BuildOptions
    from shardgen.pipeline import build
    from shardgen.sample import write_samples

    write_samples(tmp_path / "npz", categories=2, per_split=4, seed=0)
    options = BuildOptions(render=RenderOptions(size=SIZE, format=fmt), splits=("train",))
    with ThreadPoolExecutor(1) as pool:
        build(tmp_path / "npz", tmp_path / "out", options, executor=pool)
    urls = [str(p) for p in sorted((tmp_path / "out").glob("train-*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("l8"))
    assert len(samples) == 8
    for sample in samples:
        assert sample[fmt].shape == (SIZE, SIZE) and sample[fmt].dtype == np.uint8
        assert sample["cls"] in (0, 1) and sample["json"]["category"] in ("circle", "square")
        assert sample[fmt].min() < 64 and sample[fmt][0, 0] > 200  # ink on a light background
