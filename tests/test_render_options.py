"""Each render option, checked on pixels, and all of them reaching a build from the command line."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shardgen import png
from shardgen.npz import object_array
from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from shardgen.render import render_sketch
from tests.helpers import read_split, run_cli, shard_bytes, write_npz

# Two separate horizontal bars: stroke 0 on top, stroke 1 at the bottom.
TWO_BARS = np.array([[0, 0, 0], [100, 0, 1], [-100, 100, 0], [100, 0, 1]], np.int16)
TOP, BOTTOM = (10, 50), (89, 50)  # a pixel on each bar at size 100, padding 0.1


def render(**options) -> np.ndarray:
    return render_sketch(TWO_BARS, RenderOptions(**{"size": 100, "padding": 0.1, "line_width": 3, **options}))


def test_size_sets_the_image_shape():
    """--size N gives N x N images."""
    assert render(size=48).shape == (48, 48)


@pytest.mark.parametrize("padding", [0.02, 0.1, 0.25])
def test_padding_sets_the_margin(padding):
    """--padding F puts the bars' centre lines F x size from the top and bottom edges."""
    image = render_sketch(TWO_BARS, RenderOptions(size=100, padding=padding, line_width=1, antialias=False))
    rows = np.flatnonzero((image < 128).any(axis=1))
    assert abs(rows.min() - (100 * padding - 0.5)) <= 1 and abs(rows.max() - (100 * (1 - padding) - 0.5)) <= 1


def test_antialias_adds_grey_edges_and_no_antialias_has_none():
    """Antialiased lines have grey edge pixels; --no-antialias gives only pure black and white."""
    assert len(np.unique(render(antialias=True))) > 10
    assert set(np.unique(render(antialias=False)).tolist()) == {0, 255}


def test_invert_is_white_on_black():
    """--invert: background 0, ink 255."""
    image = render(invert=True)
    assert image[0, 0] == 0 and image[TOP] == 255 and image[BOTTOM] == 255
    assert np.array_equal(image, 255 - render())


def test_channels_3_gives_an_rgb_image_with_the_same_drawing():
    """--channels 3: (H, W, 3); black ink makes three equal channels equal to the grayscale image."""
    image = render(channels=3)
    assert image.shape == (100, 100, 3)
    assert np.array_equal(image, np.repeat(render()[..., None], 3, axis=2))


@pytest.mark.parametrize("channels", [1, 3])
def test_random_colour_gives_strokes_different_repeatable_colours(channels):
    """--color random: the two strokes differ, and rendering again with the same seed repeats the colours."""
    image = render(color="random", channels=channels)
    assert not np.array_equal(image[TOP], image[BOTTOM])
    assert np.array_equal(image, render_sketch(TWO_BARS, RenderOptions(100, 3, 0.1, color="random", channels=channels)))


def test_random_colours_change_with_the_seed():
    """--color random: each colour seed gives the strokes other colours."""
    options = RenderOptions(size=100, padding=0.1, line_width=3, color="random", channels=3)
    colours = {tuple(render_sketch(TWO_BARS, options, color_seed=seed)[TOP]) for seed in range(5)}
    assert len(colours) == 5


@pytest.mark.parametrize("seed", range(20))
def test_random_colours_stay_visible(seed):
    """Random colours are never lighter than 200 in any channel, so strokes show on white."""
    image = render_sketch(TWO_BARS, RenderOptions(100, 3, 0.1, color="random", channels=3), color_seed=seed)
    assert image[TOP].max() <= 200 and image[BOTTOM].max() <= 200


def test_order_colour_makes_the_first_stroke_darkest():
    """--color order: the first stroke is black, later strokes fade by a fixed step per index."""
    image = render(color="order", antialias=False)
    assert image[TOP] == 0 and image[BOTTOM] == 20
    # Twelve strokes: intensity grows with the index and stops at 200 from the tenth on.
    strokes = np.zeros((24, 3), np.int16)
    strokes[0::2, 0], strokes[1::2, 0], strokes[1::2, 2] = -60, 60, 1
    strokes[2::2, 1] = 8
    image = render_sketch(strokes, RenderOptions(size=100, padding=0.05, line_width=1, color="order", antialias=False))
    rows = np.flatnonzero((image < 255).any(axis=1))
    levels = [int(image[row, 50]) for row in rows]
    assert levels == [min(i, 10) * 20 for i in range(12)]


def test_order_colour_with_3_channels_is_a_colour_ramp():
    """--color order --channels 3: strokes get distinct, non-grey colours along a ramp."""
    image = render(color="order", channels=3, antialias=False)
    first, second = image[TOP].astype(int), image[BOTTOM].astype(int)
    assert not np.array_equal(first, second)
    assert first.max() - first.min() > 10 and second.max() - second.min() > 10  # not grey


@pytest.fixture(scope="module")
def house_src(tmp_path_factory):
    """One category of three-stroke houses (the sample generator's 'house' shape)."""
    from shardgen.sample import draw

    src = tmp_path_factory.mktemp("houses")
    rng = np.random.default_rng(0)
    write_npz(src / "house.npz", train=object_array([draw("house", rng) for _ in range(6)]))
    return src


def test_random_colours_are_the_same_in_a_rebuild(house_src, tmp_path):
    """--color random is seeded by the build seed and key: a rebuild gives the same bytes, a new seed not."""
    options = BuildOptions(render=RenderOptions(size=64, channels=3, color="random", format="npy"), shuffle=False)
    with ThreadPoolExecutor(1) as pool:
        build(house_src, tmp_path / "a", options, executor=pool)
        build(house_src, tmp_path / "b", options, executor=pool)
        reseeded = BuildOptions(render=options.render, shuffle=False, seed=1)
        build(house_src, tmp_path / "c", reseeded, executor=pool)
    a, b = shard_bytes(tmp_path / "a"), shard_bytes(tmp_path / "b")
    assert a == b
    samples = read_split(tmp_path / "a", "train")
    reseeded_samples = read_split(tmp_path / "c", "train")
    for key, sample in samples.items():
        image = np.load(io.BytesIO(sample["npy"]))
        colours = {tuple(pixel) for pixel in image.reshape(-1, 3) if pixel.max() < 255}
        assert len(colours) >= 3  # three strokes, three colours (plus antialiased blends)
        assert not np.array_equal(image, np.load(io.BytesIO(reseeded_samples[key]["npy"])))


def test_cli_passes_every_render_option_and_the_manifest_records_them(house_src, tmp_path):
    """shardgen build with every render option: the images follow them and manifest.json says so."""
    args = ["--size", "40", "--line-width", "3", "--padding", "0.1", "--no-antialias", "--invert"]
    args += ["--channels", "3", "--color", "order", "--format", "npy", "--quality", "70", "--png-compression", "6"]
    result = run_cli("build", house_src, tmp_path, "--procs", "1", "--no-progress", *args)
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "manifest.json").read_text())["options"]["render"]
    assert recorded == {
        "size": 40,
        "line_width": 3.0,
        "padding": 0.1,
        "antialias": False,
        "invert": True,
        "channels": 3,
        "color": "order",
        "format": "npy",
        "quality": 70,
        "png_compression": 6,
        "png_encoder": png.encoder_version(),
    }
    for sample in read_split(tmp_path, "train").values():
        image = np.load(io.BytesIO(sample["npy"]))
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8
        assert (image[0] == 0).all() and (image[:, 0] == 0).all()  # inverted background, padded edge
        assert len({tuple(p) for p in image.reshape(-1, 3)}) <= 4  # background + 3 stroke colours, no blends


def test_color_time_inks_the_same_pixels_as_black_shaded_by_time():
    """--color time inks exactly the black drawing's pixels, each segment by its start time, first black."""
    strokes = np.array([[0, 0, 0], [40, 5, 0], [-10, 30, 1], [25, -20, 0], [5, 5, 1]], np.int16)
    times = np.array([0.0, 100, 200, 900, 1000])
    timed = render_sketch(strokes, RenderOptions(size=64, color="time", antialias=False), times=times)
    black = render_sketch(strokes, RenderOptions(size=64, antialias=False))
    assert ((timed < 255) == (black < 255)).all()
    # Segments start at 0, 100 and 900 ms of a 1000 ms drawing: levels 0, 20 and 180 of 200.
    assert np.unique(timed[timed < 255]).tolist() == [0, 20, 180]


def test_color_time_without_times_is_refused():
    """A sketch without per-point times cannot be shaded by time."""
    with pytest.raises(ValueError, match="needs one time per point"):
        render_sketch(np.array([[0, 0, 0], [5, 5, 1]], np.int16), RenderOptions(color="time"))
