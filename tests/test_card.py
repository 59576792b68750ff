"""The dataset card: Hugging Face ``load_dataset(DST)`` reads a build as it is, with named classes."""

from __future__ import annotations

import json
import shutil

import pytest

from shardgen.card import CARD, command, dataset_card, metadata
from shardgen.location import Location
from shardgen.options import BuildOptions, RenderOptions
from shardgen.output import clean_output
from shardgen.pipeline import build
from shardgen.sample import write_samples

datasets = pytest.importorskip("datasets")
yaml = pytest.importorskip("yaml")


def card_header(dst) -> dict:
    """The YAML header of DST's card."""
    text = (dst / CARD).read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def loaded(small_build, tmp_path_factory):
    """``load_dataset(str(DST))`` of the small build, offline, cached in a temporary folder."""
    cache = tmp_path_factory.mktemp("hf-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        return datasets.load_dataset(str(small_build), cache_dir=str(cache))


def test_load_dataset_gives_every_split_with_its_rows(small_build, loaded):
    """Every split of the manifest loads, with as many rows as the manifest counts."""
    manifest = json.loads((small_build / "manifest.json").read_text())
    assert {split: loaded[split].num_rows for split in loaded} == {
        split: info["count"] for split, info in manifest["splits"].items()
    }


def test_cls_is_a_class_label_with_the_manifest_classes(small_build, loaded):
    """``cls`` is a ClassLabel whose names are the manifest's classes, in class-index order."""
    manifest = json.loads((small_build / "manifest.json").read_text())
    for split in loaded:
        assert loaded[split].features["cls"].names == manifest["classes"]


def test_first_image_decodes_and_metadata_matches(loaded):
    """The first row's image decodes to a 32 px image and its json agrees with its label."""
    row = loaded["train"][0]
    assert row["png"].size == (32, 32)
    assert row["json"]["class"] == row["cls"]
    assert loaded["train"].features["cls"].int2str(row["cls"]) == row["json"]["category"]


def test_card_header_parses_and_lists_no_wids_index(small_build):
    """The YAML header names one tar pattern per split and no ``.wids.json`` file."""
    header = card_header(small_build)
    files = header["configs"][0]["data_files"]
    assert files == [{"split": s, "path": f"{s}-*.tar"} for s in ("train", "valid", "test")]
    assert "wids" not in json.dumps(header)


def test_card_says_how_the_build_was_made(small_build):
    """The card's text holds the command, the shardgen version, counts per class and skipped inputs."""
    manifest = json.loads((small_build / "manifest.json").read_text())
    text = (small_build / CARD).read_text()
    assert command(manifest["options"]) in text
    assert "shardgen build SRC DST --size 32" in text and "--shard-size 10" in text
    assert f"shardgen {manifest['shardgen_version']}" in text
    assert f"| 0 | {manifest['classes'][0]} | 20 | 20 | 20 |" in text
    assert "0 invalid sketch(es) and 0 unreadable file(s)" in text


def test_card_lists_skipped_inputs():
    """Skipped sketches (by split and index, or by line) and files appear in the card, with their reasons."""
    manifest = {
        "shardgen_version": "0",
        "classes": ["a"],
        "sources": ["a.npz", "b.npz"],
        "options": {"render": {"size": 8, "format": "png", "channels": 1}},
        "splits": {"train": {"count": 1, "shards": [], "class_counts": [1]}},
        "skipped": [
            {"source": "a.npz", "split": "train", "index": 3, "reason": "NaN"},
            {"source": "c.ndjson", "line": 7, "reason": "bad JSON"},
        ],
        "skipped_files": [{"source": "b.npz", "reason": "not a zip file"}],
    }
    text = dataset_card(manifest)
    assert "2 invalid sketch(es) and 1 unreadable file(s)" in text
    assert "- `b.npz`: not a zip file" in text and "- `a.npz` train[3]: NaN" in text
    assert "- `c.ndjson` line 7: bad JSON" in text


@pytest.mark.parametrize(
    ("image_format", "channels", "feature"),
    [
        ("png", 1, "image"),
        ("webp", 3, "image"),
        ("npy", 1, {"array2_d": {"shape": [16, 16], "dtype": "uint8"}}),
        ("npy", 3, {"array3_d": {"shape": [16, 16, 3], "dtype": "uint8"}}),
    ],
)
def test_image_feature_follows_the_format(image_format, channels, feature):
    """png/jpg/webp are declared as images; npy as a uint8 array of the rendered shape."""
    manifest = {
        "shardgen_version": "0",
        "classes": ["a"],
        "sources": ["a.npz"],
        "options": {"render": {"size": 16, "format": image_format, "channels": channels}},
        "splits": {},
    }
    text = dataset_card(manifest)
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["dataset_info"]["features"][0] == {"name": image_format, "dtype": feature}


def test_overwrite_removes_our_card_but_not_a_users_readme(small_build, tmp_path):
    """``clean_output`` deletes the card a build recorded writing and leaves a README.md of the user's alone."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    shutil.copytree(small_build, ours)
    theirs.mkdir()
    (theirs / CARD).write_text("# my notes\n")
    for folder in (ours, theirs):
        clean_output(Location.of(folder), folder / ".shardgen")
    assert not (ours / CARD).exists()
    assert (theirs / CARD).read_text() == "# my notes\n"


@pytest.mark.parametrize(
    ("sources", "extra"),
    [
        (["a.npz"], []),
        (["full_simplified_a.ndjson"], ["key_id", "countrycode", "recognized", "word", "timestamp"]),
        (["a.bin", "b.ndjson.gz"], ["key_id", "countrycode", "recognized", "word"]),
    ],
)
def test_json_fields_follow_the_input_formats(sources, extra):
    """QuickDraw inputs add their metadata fields; a timestamp of two types (.bin and text) is left out."""
    assert [name for name, _ in metadata(sources)] == ["category", "class", "split", "index", "source", *extra]


def test_command_spells_quickdraw_options_as_flags():
    """Nested drawing options become the flags ``shardgen build`` takes."""
    options = {"render": {"size": 8}, "seed": 1, "drawings": {"split_ratio": [0.8, 0.1, 0.1], "recognized_only": True}}
    assert command(options) == "shardgen build SRC DST --size 8 --seed 1 --split-ratio 0.8,0.1,0.1 --recognized-only"


def test_load_dataset_gives_quickdraw_metadata(tmp_path):
    """A build of QuickDraw ndjson files loads with each drawing's key_id, country and timestamp."""
    write_samples(tmp_path / "ndjson", categories=2, per_split=3, seed=1, format="ndjson")
    build(tmp_path / "ndjson", tmp_path / "out", BuildOptions(render=RenderOptions(size=16)), procs=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        loaded = datasets.load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "cache"))
    meta = loaded[0]["json"]
    assert loaded.num_rows == 18 and meta["key_id"].isdigit() and meta["countrycode"] and meta["timestamp"]


def test_command_leaves_out_the_recorded_encoder_version():
    """The PNG encoder's version is recorded for identity, not a flag: the command does not spell it."""
    recorded = {"render": {"size": 8, "png_encoder": "shardgen png 3, zlib-ng 2.3.3"}}
    assert command(recorded) == "shardgen build SRC DST --size 8"
