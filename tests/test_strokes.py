"""--with-strokes: each sample also holds its stroke-3 array, exactly as the store holds it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from shardgen.dataset import open_dataset, open_indexed
from shardgen.errors import UsageError
from shardgen.layout import Layout
from shardgen.npz import object_array
from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from shardgen.sample import write_samples
from shardgen.store import StoreReader
from tests.helpers import read_split, run_cli, write_npz

SPLITS = ("train", "valid", "test")


def fractional_sketches(rng: np.random.Generator, count: int) -> np.ndarray:
    """Sketches with fractional float32 deltas: the store keeps them as float32, not int16."""
    sketches = []
    for _ in range(count):
        rows = np.zeros((int(rng.integers(3, 9)), 3), dtype=np.float32)
        rows[:, :2] = rng.normal(0, 5, size=(len(rows), 2)).astype(np.float32)
        rows[-1, 2] = 1
        sketches.append(rows)
    return object_array(sketches)


@pytest.fixture(scope="module")
def strokes_build(tmp_path_factory):
    """Two int16 classes and one float32 class, 8 sketches a split, built with strokes."""
    src = tmp_path_factory.mktemp("strokes-npz")
    write_samples(src, categories=2, per_split=8, seed=3)
    rng = np.random.default_rng(0)
    write_npz(src / "wobble.npz", **{split: fractional_sketches(rng, 8) for split in SPLITS})
    dst = tmp_path_factory.mktemp("strokes-build")
    build(src, dst, BuildOptions(render=RenderOptions(size=16, strokes=True), shard_size=5), procs=1)
    return dst


def store_sketches(dst, split: str) -> dict[str, np.ndarray]:
    """Every sketch of a split as the build's store holds it, by sample key."""
    layout = Layout.load(dst / ".shardgen")
    reader = StoreReader(dst / ".shardgen" / "store", split)
    out = {}
    for class_index, (store_id, count) in enumerate(zip(layout.store_ids, layout.counts[split])):
        for position in range(count):
            strokes, source_index = reader.sketch(store_id, position)
            out[f"{split}-{class_index:04d}-{source_index:08d}"] = np.array(strokes)
    return out


@pytest.mark.parametrize("split", SPLITS)
def test_every_strokes_member_equals_the_store_array(strokes_build, split):
    """Each sample's ``.strokes.npy`` has the store's dtype, shape and values, for every sample."""
    expected = store_sketches(strokes_build, split)
    samples = read_split(strokes_build, split)
    assert samples.keys() == expected.keys()
    for key, sample in samples.items():
        strokes = np.load(io.BytesIO(sample["strokes.npy"]), allow_pickle=False)
        assert strokes.dtype == expected[key].dtype and np.array_equal(strokes, expected[key]), key


def test_store_dtypes_are_int16_and_float32(strokes_build):
    """The build holds both store dtypes, so the round trip covers each."""
    dtypes = {array.dtype for array in store_sketches(strokes_build, "train").values()}
    assert dtypes == {np.dtype(np.int16), np.dtype(np.float32)}


def test_open_dataset_yields_strokes_before_metadata(strokes_build):
    """``strokes=True`` adds the array after the label; metadata stays the last item."""
    expected = store_sketches(strokes_build, "valid")
    items = list(open_dataset(strokes_build, "valid", strokes=True, metadata=True))
    assert len(items) == len(expected)
    for image, label, strokes, meta in items:
        key = f"valid-{label:04d}-{meta['index']:08d}"
        assert image.shape == (16, 16) and np.array_equal(strokes, expected[key])


def test_open_dataset_without_strokes_ignores_the_extra_member(strokes_build):
    """A strokes build still reads as ``(image, label)`` by default."""
    image, label = next(iter(open_dataset(strokes_build, "train")))
    assert image.shape == (16, 16) and isinstance(label, int)


def test_open_indexed_yields_strokes(strokes_build):
    """wids random access gives the same stroke array as the tar member."""
    pytest.importorskip("wids")
    dataset = open_indexed(strokes_build, "test", strokes=True, metadata=True)
    expected = store_sketches(strokes_build, "test")
    image, label, strokes, meta = dataset[3]
    assert np.array_equal(strokes, expected[f"test-{label:04d}-{meta['index']:08d}"])


def test_plain_webdataset_reads_image_label_and_strokes(strokes_build):
    """webdataset alone decodes the image, the class and the stroke array of each sample."""
    import webdataset as wds

    manifest = json.loads((strokes_build / "manifest.json").read_text())
    urls = [str(strokes_build / s["file"]) for s in manifest["splits"]["train"]["shards"]]
    dataset = wds.WebDataset(urls, shardshuffle=False).decode("l8").to_tuple("png", "cls", "strokes.npy")
    image, label, strokes = next(iter(dataset))
    assert image.shape == (16, 16) and strokes.ndim == 2 and strokes.shape[1] == 3


def test_dataloader_batches_a_strokes_build(strokes_build):
    """A PyTorch DataLoader batches images and labels of a build that also holds strokes."""
    torch = pytest.importorskip("torch")
    loader = torch.utils.data.DataLoader(open_dataset(strokes_build, "train", decode="torch"), batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 1, 16, 16) and labels.shape == (4,)


def test_load_dataset_gives_the_strokes_exactly(strokes_build, tmp_path):
    """Hugging Face ``load_dataset`` loads the strokes feature with every value intact."""
    datasets = pytest.importorskip("datasets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        loaded = datasets.load_dataset(str(strokes_build), split="train", cache_dir=str(tmp_path))
    expected = store_sketches(strokes_build, "train")
    assert loaded.num_rows == len(expected)
    for row in loaded.with_format("numpy"):
        assert np.array_equal(row["strokes.npy"], expected[row["__key__"]])


def test_strokes_without_the_option_is_a_usage_error(small_build):
    """Asking a build without strokes for them says how to get them."""
    with pytest.raises(UsageError, match="--with-strokes"):
        open_dataset(small_build, "train", strokes=True)


def test_option_is_recorded_only_when_set(strokes_build, small_build):
    """The manifest records ``strokes`` for a strokes build and leaves other manifests as they were."""
    assert json.loads((strokes_build / "manifest.json").read_text())["options"]["render"]["strokes"] is True
    assert "strokes" not in json.loads((small_build / "manifest.json").read_text())["options"]["render"]


@pytest.mark.slow
def test_cli_with_strokes_builds_and_verifies(tmp_path):
    """``shardgen build --with-strokes`` writes the member, and ``shardgen verify`` accepts the build."""
    write_samples(tmp_path / "npz", categories=2, per_split=4, seed=1)
    args = ("--size", "16", "--procs", "1", "--no-progress", "-q")
    built = run_cli("build", tmp_path / "npz", tmp_path / "out", "--with-strokes", *args)
    assert built.returncode == 0, built.stderr
    assert all("strokes.npy" in sample for sample in read_split(tmp_path / "out", "train").values())
    checked = run_cli("verify", tmp_path / "out", "--procs", "1")
    assert checked.returncode == 0, checked.stdout + checked.stderr
