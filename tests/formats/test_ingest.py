"""QuickDraw files built end to end: same pixels as .npz, metadata in every sample, splits, filters."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from shardgen.errors import InputError, UsageError
from shardgen.options import BuildOptions, DrawingOptions, RenderOptions
from shardgen.pipeline import build
from shardgen.sample import write_samples
from tests.helpers import assert_one_line_error, read_split, run_cli

PER_SPLIT = 8
SPLITS = ("train", "valid", "test")
SMALL = BuildOptions(render=RenderOptions(size=32), shard_size=40)


def samples(dst: Path) -> dict[tuple[str, int], dict]:
    """Every sample of a build by (category, position in the QuickDraw file), with its JSON decoded."""
    out = {}
    for split in SPLITS:
        for sample in read_split(dst, split).values():
            meta = json.loads(sample["json"])
            position = meta["index"]
            if meta["source"].endswith(".npz"):  # the .npz holds the same drawings split by split
                position += SPLITS.index(meta["split"]) * PER_SPLIT
            out[(meta["category"], position)] = {**sample, "meta": meta}
    return out


def gzip_files(folder: Path) -> None:
    for path in folder.glob("*.ndjson"):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes(), mtime=0))
        path.unlink()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Builds of the same synthetic drawings in every format, by format name."""

    def one(name: str, options: BuildOptions = SMALL) -> Path:
        src, dst = tmp_path_factory.mktemp(f"src-{name}"), tmp_path_factory.mktemp(f"dst-{name}")
        fmt = {"npz-fit": "npz", "ndjson.gz": "ndjson"}.get(name, name)
        write_samples(src, categories=3, per_split=PER_SPLIT, seed=5, format=fmt, fit=name == "npz-fit")
        if name == "ndjson.gz":
            gzip_files(src)
        build(src, dst, options, procs=2)
        return dst

    return {name: one(name) for name in ("npz-fit", "ndjson", "ndjson.gz", "bin", "csv", "ndjson-raw")}


@pytest.mark.parametrize("name", ["ndjson", "ndjson.gz", "bin", "csv"])
def test_every_format_renders_the_same_images_as_npz(built, name):
    """The same drawings as .npz, ndjson, .ndjson.gz, .bin and CSV give byte-identical images."""
    reference, other = samples(built["npz-fit"]), samples(built[name])
    assert other.keys() == reference.keys()
    assert all(other[key]["png"] == reference[key]["png"] for key in reference)


def test_raw_ndjson_agrees_with_simplified_within_rounding(built):
    """Raw drawings (positions before rounding) render within a rounding of the simplified ones."""
    simplified, raw = samples(built["ndjson"]), samples(built["ndjson-raw"])
    assert raw.keys() == simplified.keys()
    decode = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).astype(int)  # noqa: E731
    differences = [np.abs(decode(raw[k]["png"]) - decode(simplified[k]["png"])).mean() for k in raw]
    assert max(differences) < 8  # grey levels out of 255, on average over the image


def test_samples_carry_the_drawings_metadata(built, tmp_path):
    """Each sample's JSON holds category, class, split, index, source, then the drawing's own fields."""
    write_samples(tmp_path, categories=3, per_split=PER_SPLIT, seed=5, format="ndjson")
    line = (tmp_path / "full_simplified_square.ndjson").read_text().splitlines()[5]
    record = json.loads(line)
    meta = samples(built["ndjson"])[("square", 5)]["meta"]
    assert meta == {
        "category": "square",
        "class": 1,
        "split": "train",
        "index": 5,
        "source": "full_simplified_square.ndjson",
        **{k: record[k] for k in ("key_id", "countrycode", "recognized", "timestamp", "word")},
    }
    assert list(meta)[5:] == ["key_id", "countrycode", "recognized", "timestamp", "word"]
    assert isinstance(meta["key_id"], str) and int(meta["key_id"]) > 2**53


def test_npz_samples_keep_exactly_their_metadata(built):
    """A .npz source adds no fields: its sample JSON is what it always was."""
    meta = next(iter(samples(built["npz-fit"]).values()))["meta"]
    assert list(meta) == ["category", "class", "split", "index", "source"]


def ndjson_lines(tmp_path: Path, count: int) -> list[str]:
    write_samples(tmp_path, categories=1, per_split=count, seed=9, format="ndjson")
    return (tmp_path / "full_simplified_circle.ndjson").read_text().splitlines(keepends=True)


def splits_by_key(dst: Path) -> dict[str, str]:
    return {s["meta"]["key_id"]: s["meta"]["split"] for s in samples(dst).values()}


def test_a_drawings_split_does_not_change_when_its_file_grows_or_is_reordered(tmp_path):
    """--split-ratio deals by key_id: reversing the file and appending lines moves no drawing."""
    lines = ndjson_lines(tmp_path / "gen", 10)  # 30 drawings
    options = BuildOptions(render=RenderOptions(size=16), drawings=DrawingOptions(split_ratio=(0.5, 0.25, 0.25)))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "circle.ndjson").write_text("".join(lines[:20]))
    build(tmp_path / "a", tmp_path / "a-out", options, procs=1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "circle.ndjson").write_text("".join(reversed(lines[:20])) + "".join(lines[20:]))
    build(tmp_path / "b", tmp_path / "b-out", options, procs=1)
    before, after = splits_by_key(tmp_path / "a-out"), splits_by_key(tmp_path / "b-out")
    assert set(before.values()) == set(SPLITS)
    assert {key: after[key] for key in before} == before
    assert len(after) == 30


def test_filters_keep_only_matching_drawings_and_count_the_rest(tmp_path):
    """--recognized-only and --countries leave out other drawings and the manifest counts them."""
    write_samples(tmp_path / "src", categories=2, per_split=20, seed=3, format="csv")
    drawings = DrawingOptions(recognized_only=True, countries=("US", "GB"))
    result = build(tmp_path / "src", tmp_path / "out", BuildOptions(render=RenderOptions(size=16), drawings=drawings))
    kept = [s["meta"] for s in samples(tmp_path / "out").values()]
    assert kept and all(m["recognized"] is True and m["countrycode"] in ("US", "GB") for m in kept)
    filtered = result.manifest["filtered"]
    assert filtered["not_recognized"] > 0 and filtered["country"] > 0
    assert len(kept) + filtered["not_recognized"] + filtered["country"] == 2 * 60


def build_with_a_bad_line(tmp_path: Path):
    """A build of six good drawings with a line of bad JSON as line 4 of their file."""
    lines = ndjson_lines(tmp_path / "gen", 2)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "circle.ndjson").write_text("".join(lines[:3]) + "{oops\n" + "".join(lines[3:]))
    return build(tmp_path / "src", tmp_path / "out", BuildOptions(render=RenderOptions(size=16)), procs=1)


def test_malformed_lines_are_listed_in_the_manifest(tmp_path):
    """Skipped lines are listed with source, line and reason, like invalid sketches; the rest is built."""
    result = build_with_a_bad_line(tmp_path)
    assert [(s["source"], s["line"]) for s in result.manifest["skipped"]] == [("circle.ndjson", 4)]
    assert "not valid JSON" in result.manifest["skipped"][0]["reason"]
    assert result.images == 6


def test_info_lists_a_skipped_line_by_its_line_number(tmp_path):
    """`shardgen info` shows where in its file a skipped drawing was."""
    build_with_a_bad_line(tmp_path)
    listed = run_cli("info", tmp_path / "out")
    assert "circle.ndjson: line 4: not valid JSON" in listed.stdout, listed.stderr


@pytest.mark.parametrize(
    "name, content",
    [
        ("cat.ndjson", b'{"word": "cat"}\n[]\n'),
        ("cat.bin", b"\x01\x02\x03"),
        ("cat.ndjson.gz", gzip.compress(b'{"key_id": "1", "drawing": [[[1, 2], [1, 2]]]}\n' * 50)[:40]),
    ],
)
def test_a_file_without_a_readable_drawing_is_an_input_error_naming_it(tmp_path, name, content):
    """No valid drawing, a file cut short, a corrupt gzip: an InputError naming the file."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / name).write_bytes(content)
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        build(tmp_path / "src", tmp_path / "out", BuildOptions(render=RenderOptions(size=16)), procs=1)


def test_color_time_shades_raw_drawings_by_time(tmp_path):
    """With raw input, --color time inks each drawing in many shades (hard-edged black would give one)."""
    src = tmp_path / "src"
    write_samples(src, categories=1, per_split=2, seed=5, format="ndjson-raw")
    timed = BuildOptions(render=RenderOptions(size=64, color="time", antialias=False))
    build(src, tmp_path / "out", timed, procs=1)
    images = [cv2.imdecode(np.frombuffer(s["png"], np.uint8), 0) for s in samples(tmp_path / "out").values()]
    assert all(len(np.unique(image[image < 255])) > 10 for image in images)


@pytest.mark.parametrize("fmt", ["npz", "ndjson", "bin"])
def test_color_time_is_refused_for_inputs_without_times(tmp_path, fmt):
    """.npz, simplified ndjson and .bin have no timing: --color time is refused before anything is written."""
    write_samples(tmp_path / "src", categories=1, per_split=2, format=fmt)
    with pytest.raises(UsageError, match="--color time needs each point's time"):
        build(tmp_path / "src", tmp_path / "out", BuildOptions(render=RenderOptions(color="time")), procs=1)
    assert not (tmp_path / "out").exists()


def test_limit_caps_each_split(tmp_path):
    """--limit keeps at most N drawings a split, as it does for .npz."""
    write_samples(tmp_path / "src", categories=1, per_split=20, format="bin")
    options = BuildOptions(render=RenderOptions(size=16), limit=5, drawings=DrawingOptions(split_ratio=(0.5, 0.5, 0)))
    result = build(tmp_path / "src", tmp_path / "out", options, procs=1)
    assert {split: info["count"] for split, info in result.manifest["splits"].items()} == {"train": 5, "valid": 5}


def test_the_cli_samples_and_builds_quickdraw_files(tmp_path):
    """`sample --format csv`, then `build --split-ratio --countries`: all splits built, filters in the summary."""
    assert run_cli("sample", tmp_path / "src", "--format", "csv", "-c", "2", "-n", "10").returncode == 0
    result = run_cli(
        "build", tmp_path / "src", tmp_path / "out", "--size", "16", "--no-progress",
        "--split-ratio", "0.6,0.2,0.2", "--countries", "us,gb",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "filtered out 0 not recognized" in result.stdout
    assert set(json.loads((tmp_path / "out" / "manifest.json").read_text())["splits"]) == set(SPLITS)


def test_a_bad_split_ratio_is_one_line_and_exit_2(tmp_path):
    """A ratio that is not three numbers is a usage error, not a traceback."""
    write_samples(tmp_path / "src", categories=1, per_split=2, format="ndjson")
    result = run_cli("build", tmp_path / "src", tmp_path / "out", "--split-ratio", "0.9,x")
    assert_one_line_error(result, "--split-ratio")


def test_a_rerun_reuses_the_store_and_the_shards(tmp_path):
    """Building the same QuickDraw files again reads nothing anew and rewrites no shard."""
    write_samples(tmp_path / "src", categories=2, per_split=4, format="ndjson")
    build(tmp_path / "src", tmp_path / "out", SMALL, procs=1)
    record = tmp_path / "out" / ".shardgen" / "store" / "00000.json"
    ingested = record.stat().st_mtime_ns
    again = build(tmp_path / "src", tmp_path / "out", SMALL, procs=1)
    assert (again.shards_written, record.stat().st_mtime_ns) == (0, ingested)


@pytest.mark.parametrize(
    "drawings", [DrawingOptions(split_ratio=(0.8, 0.1, 0.1)), DrawingOptions(recognized_only=True)]
)
def test_quickdraw_options_are_refused_for_npz_inputs(tmp_path, drawings):
    """A .npz has its own splits and no metadata: --split-ratio and the filters are refused, naming it."""
    write_samples(tmp_path / "src", categories=1, per_split=2)
    with pytest.raises(UsageError, match=r"circle\.npz: --split-ratio, --recognized-only and --countries"):
        build(tmp_path / "src", tmp_path / "out", BuildOptions(drawings=drawings), procs=1)


def test_a_file_of_only_malformed_lines_stops_early(tmp_path):
    """A file whose first records are all malformed is refused without listing every line."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "cat.ndjson").write_text("not json\n" * 5000)
    with pytest.raises(InputError, match="the first 1000 records are all malformed"):
        build(tmp_path / "src", tmp_path / "out", SMALL, procs=1)
