"""Reading builds back: open_dataset streams every sample once per epoch; wids reads by index."""

from __future__ import annotations

import builtins
import json
import random
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from shardgen.dataset import decode_image, open_dataset
from shardgen.errors import InputError, UsageError
from shardgen.options import RenderOptions
from shardgen.render import encode_image
from tests.helpers import ROOT, read_shard, read_split

CLASSES = ["circle", "square", "triangle"]


def expected_samples(dst, split: str) -> dict[tuple[str, int], int]:
    """(source, index) -> label of every sample of a split, as the tar files hold them."""
    out = {}
    for sample in read_split(dst, split).values():
        meta = json.loads(sample["json"])
        out[(meta["source"], meta["index"])] = int(sample["cls"])
    return out


def seen(items) -> Counter:
    """How often each (source, index) appeared, checking each label against its metadata."""
    counts: Counter = Counter()
    for _, label, meta in items:
        assert label == meta["class"] and CLASSES[label] == meta["category"]
        counts[(meta["source"], meta["index"])] += 1
    return counts


def test_open_dataset_streams_every_sample_once_with_its_label(small_build):
    """One pass over a split yields each sample exactly once, with the label the tar holds."""
    expected = expected_samples(small_build, "train")
    items = list(open_dataset(small_build, "train", metadata=True))
    counts = seen(items)
    assert len(items) == 60 and set(counts.values()) == {1}
    assert {(m["source"], m["index"]): label for _, label, m in items} == expected


def test_shuffled_epochs_each_see_every_sample_once(small_build):
    """With sample and shard shuffling, every epoch still holds each sample once, in a new order."""
    dataset = open_dataset(small_build, "valid", shuffle=30, shard_shuffle=True, metadata=True)
    first, second = list(dataset), list(dataset)
    for epoch in (first, second):
        counts = seen(epoch)
        assert len(counts) == 60 and set(counts.values()) == {1}
    unshuffled = [(m["source"], m["index"]) for _, _, m in open_dataset(small_build, "valid", metadata=True)]
    assert [(m["source"], m["index"]) for _, _, m in first] != unshuffled


def test_default_decode_is_uint8_numpy_and_grayscale_stays_two_dimensional(small_build):
    """decode='numpy' gives (H, W) uint8 for a 1-channel build and a Python int label."""
    image, label = next(iter(open_dataset(small_build, "test")))
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (32, 32)
    assert type(label) is int and 0 <= label < 3
    assert image.min() < 128 and image.max() == 255  # black ink on white


def test_decode_choices_bytes_pil_and_torch(small_build):
    """decode='bytes' gives the tar's PNG bytes; 'pil' an L image; 'torch' float (1, H, W) in [0, 1]."""
    first_shard = read_shard(small_build / "test-000000.tar")
    raw, _ = next(iter(open_dataset(small_build, "test", decode="bytes")))
    assert raw == next(iter(first_shard.values()))["png"]
    pil, _ = next(iter(open_dataset(small_build, "test", decode="pil")))
    assert pil.mode == "L" and pil.size == (32, 32)
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'shardgen[torch]')")
    tensor, _ = next(iter(open_dataset(small_build, "test", decode="torch")))
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (1, 32, 32)
    assert 0.0 <= float(tensor.min()) < 0.5 and float(tensor.max()) == 1.0


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "npy"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_image_handles_every_format_and_channel_count(fmt, channels):
    """Every render format decodes to (H, W) for 1 channel or (H, W, 3) RGB for 3 channels."""
    options = RenderOptions(size=16, format=fmt, channels=channels)
    if channels == 1:
        image = np.full((16, 16), 255, np.uint8)
        image[4:12, 4:12] = 0
    else:
        image = np.zeros((16, 16, 3), np.uint8)
        image[:, :] = (0, 0, 255)  # pure red in OpenCV's BGR order
    decoded = decode_image(encode_image(image, options), fmt, channels)
    assert decoded.dtype == np.uint8
    if channels == 1:
        assert decoded.shape == (16, 16) and decoded[8, 8] < 60 and decoded[0, 0] > 200
    else:
        assert decoded.shape == (16, 16, 3) and decoded[8, 8, 0] > 200 and decoded[8, 8, 2] < 60  # RGB


def test_resampled_stream_is_endless(small_build):
    """resampled=True draws shards with replacement: an epoch is whatever with_epoch says."""
    items = list(open_dataset(small_build, "valid", resampled=True).with_epoch(150))
    assert len(items) == 150


def test_nodes_get_disjoint_shards_that_cover_the_split(small_build, monkeypatch):
    """With RANK/WORLD_SIZE set (as torchrun does), two ranks see disjoint halves of the split."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    halves = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        halves.append(seen(open_dataset(small_build, "train", metadata=True)))
    assert len(halves[0]) == len(halves[1]) == 30
    assert not set(halves[0]) & set(halves[1])
    assert set(halves[0]) | set(halves[1]) == set(expected_samples(small_build, "train"))


def test_dataloader_with_two_workers_sees_every_sample_once(small_build):
    """A torch DataLoader with num_workers=2 over open_dataset yields each sample once per epoch."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'shardgen[torch]')")
    from torch.utils.data import DataLoader

    dataset = open_dataset(small_build, "train", shuffle=20, shard_shuffle=True, metadata=True)
    loader = DataLoader(dataset, batch_size=4, num_workers=2)
    expected = expected_samples(small_build, "train")
    for _epoch in range(2):
        counts: Counter = Counter()
        for images, labels, meta in loader:
            assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (32, 32)
            for label, source, index in zip(labels.tolist(), meta["source"], meta["index"].tolist()):
                assert expected[(source, index)] == label
                counts[(source, index)] += 1
        assert set(counts) == set(expected) and set(counts.values()) == {1}


def test_open_dataset_works_without_torch(small_build):
    """In a Python where torch cannot be imported, open_dataset still streams the split (and
    decode='torch' is refused up front with the install command)."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from shardgen import open_dataset\n"
        f"items = list(open_dataset({str(small_build)!r}, 'valid'))\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
        "print(len(items), items[0][0].shape)\n"
        "try:\n"
        f"    open_dataset({str(small_build)!r}, 'valid', decode='torch')\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "60 (32, 32)"
    assert lines[1] == "UsageError decode='torch' needs torch: pip install 'shardgen[torch]'"


def test_unknown_split_and_missing_build_are_clear_errors(small_build, tmp_path):
    """A split the build lacks names the ones it has; a folder without a manifest says so."""
    with pytest.raises(UsageError, match="no split 'tset'.*train, valid, test"):
        open_dataset(small_build, "tset")
    with pytest.raises(InputError, match="no manifest.json"):
        open_dataset(tmp_path, "train")
    with pytest.raises(UsageError, match="decode must be one of"):
        open_dataset(small_build, "train", decode="jpeg")


def test_wids_random_access_returns_the_right_sample(small_build, tmp_path):
    """wids.ShardListDataset on train.wids.json returns, for random indices, the sample the
    manifest and the tar files put at that position."""
    wids = pytest.importorskip("wids", reason="wids is not installed (pip install 'shardgen[wids]')")
    manifest = json.loads((small_build / "manifest.json").read_text())
    # Expected order: manifest shard order, then archive order inside each shard.
    ordered = [
        (shard["file"], key, sample)
        for shard in manifest["splits"]["train"]["shards"]
        for key, sample in read_shard(small_build / shard["file"]).items()
    ]
    # localname=str reads local shards in place instead of copying them into a cache folder.
    dataset = wids.ShardListDataset(str(small_build / "train.wids.json"), localname=str, transformations=[])
    assert len(dataset) == manifest["splits"]["train"]["count"] == len(ordered) == 60
    for index in random.Random(0).sample(range(60), 15) + [0, 59]:
        file, key, sample = ordered[index]
        got = dataset[index]
        assert got["__key__"] == key and got["__shard__"].endswith(file)
        assert got[".png"].read() == sample["png"] and got[".cls"].read() == sample["cls"]
        meta = json.loads(got[".json"].read())
        assert manifest["classes"][int(sample["cls"])] == meta["category"]
    dataset.close()


def test_open_indexed_gives_decoded_samples_by_index(small_build):
    """open_indexed wraps wids: len() is the split's count and item i is the wids sample i, decoded."""
    pytest.importorskip("wids", reason="wids is not installed (pip install 'shardgen[wids]')")
    from shardgen.dataset import open_indexed

    dataset = open_indexed(small_build, "valid", metadata=True)
    streamed = list(open_dataset(small_build, "valid", metadata=True))
    assert len(dataset) == len(streamed) == 60
    for index in (0, 13, 59):
        image, label, meta = dataset[index]
        assert image.dtype == np.uint8 and image.shape == (32, 32)
        assert (label, meta) == streamed[index][1:] and np.array_equal(image, streamed[index][0])
    dataset.close()


@pytest.mark.parametrize(
    ("missing", "expected"),
    [("wids", "random access needs the wids package"), ("torch", "random access needs wids, which needs torch")],
)
def test_open_indexed_without_wids_or_its_torch_names_the_missing_package(small_build, monkeypatch, missing, expected):
    """Without wids, or without the torch that wids imports, open_indexed says which one and how to install it."""
    from shardgen.dataset import open_indexed

    real_import = builtins.__import__

    def import_without(name, *args, **kwargs):
        if name == "wids":
            raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", import_without)
    with pytest.raises(UsageError, match=re.escape(f"{expected}") + r".*pip install 'shardgen\[wids\]'"):
        open_indexed(small_build, "valid")


@pytest.mark.parametrize(("fmt", "channels"), [("jpg", 3), ("webp", 1), ("npy", 3), ("npy", 1)])
def test_other_formats_stream_and_verify(tmp_path, fmt, channels):
    """Builds in jpg, webp or npy, grey or colour, stream with the build's shape and verify clean."""
    from shardgen.options import BuildOptions
    from shardgen.pipeline import build
    from shardgen.sample import write_samples
    from shardgen.verify import verify

    write_samples(tmp_path / "src", categories=2, per_split=4, seed=3)
    options = BuildOptions(render=RenderOptions(size=24, format=fmt, channels=channels), splits=("valid",))
    build(tmp_path / "src", tmp_path / "out", options, procs=1)
    items = list(open_dataset(tmp_path / "out", "valid"))
    shape = (24, 24) if channels == 1 else (24, 24, 3)
    assert len(items) == 8 and {image.shape for image, _ in items} == {shape}
    assert sorted(label for _, label in items) == [0, 0, 0, 0, 1, 1, 1, 1]
    result = verify(tmp_path / "out", procs=1)
    assert result.ok, result.problems
