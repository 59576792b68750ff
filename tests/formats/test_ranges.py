"""A large plain ndjson file is ingested a byte range per worker, and gives the store one pass gives."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from shardgen import orchestrate
from shardgen.errors import InputError, OutputError
from shardgen.formats import ranges
from shardgen.formats.ingest import DrawingIngestTask, ingest_drawings
from shardgen.formats.ranges import RangeTask, byte_ranges, ingest_range, join_ranges, splits_by_range
from shardgen.options import BuildOptions, DrawingOptions, RenderOptions
from shardgen.pipeline import build
from shardgen.read import SourceFile
from shardgen.sample import write_samples
from shardgen.store import RANGES_DIR
from tests.helpers import kill_build_at, published_files, run_cli

RATIO = DrawingOptions(split_ratio=(0.8, 0.1, 0.1))


def quickdraw_lines(folder: Path, formats: tuple[str, ...] = ("ndjson", "ndjson-raw")) -> list[str]:
    """Drawings of two categories, simplified then raw, as ndjson lines."""
    for seed, fmt in enumerate(formats):
        write_samples(folder / fmt, categories=2, per_split=20, seed=seed, format=fmt)
    return [
        line
        for fmt in formats
        for path in sorted((folder / fmt).glob("*.ndjson"))
        for line in path.read_text().splitlines()
    ]


def mixed_file(tmp_path: Path, lines: list[str] | None = None) -> Path:
    """One ndjson file: simplified drawings then raw ones (int16 and float strokes), with malformed and blank lines."""
    lines = lines if lines is not None else quickdraw_lines(tmp_path / "gen")
    lines[3:3] = ["not json"]
    lines[10:10] = [""]
    lines[40:40] = ["[1, 2]"]
    path = tmp_path / "src" / "mixed.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def ingest_task(path: Path, store: Path, on_error: str = "skip-sketches") -> DrawingIngestTask:
    return DrawingIngestTask(
        source=SourceFile(path, path.stem),
        class_index=0,
        store_dir=store,
        splits=("train", "valid", "test"),
        limit=None,
        on_error=on_error,
        fingerprint="test",
        drawings=RATIO,
    )


def ingest_in(path: Path, store: Path, count: int, on_error: str = "skip-sketches"):
    """Ingest ``path`` as ``count`` equal byte ranges, then join them."""
    task, size = ingest_task(path, store, on_error), path.stat().st_size
    bounds = [size * part // count for part in range(count + 1)]
    parts = [ingest_range(RangeTask(task, part, *pair)) for part, pair in enumerate(zip(bounds, bounds[1:]))]
    return join_ranges(task, parts)


def store_files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("count", [2, 3, 7, 40])
def test_a_file_ingested_in_ranges_gives_the_store_one_pass_gives(tmp_path, count):
    """Every store file (strokes, offsets, indexes, metadata, times) and the record are the same bytes."""
    path = mixed_file(tmp_path)
    whole = ingest_drawings(ingest_task(path, tmp_path / "one"))
    joined = ingest_in(path, tmp_path / "many", count)
    assert joined == whole
    assert len(whole.skipped) == 2 and whole.counts["train"] > 0
    assert store_files(tmp_path / "many") == store_files(tmp_path / "one")


def test_raw_drawings_keep_their_times_when_ingested_in_ranges(tmp_path):
    """A file of raw drawings only: the joined store has their times, as one pass gives."""
    path = mixed_file(tmp_path, quickdraw_lines(tmp_path / "gen", formats=("ndjson-raw",)))
    whole = ingest_drawings(ingest_task(path, tmp_path / "one"))
    assert ingest_in(path, tmp_path / "many", 5) == whole
    assert whole.timed
    files = store_files(tmp_path / "many")
    assert "train/00000.times.npy" in files and files == store_files(tmp_path / "one")


def test_the_join_removes_the_part_folders(tmp_path):
    """Once the class is joined, its ranges' part folders are gone."""
    ingest_in(mixed_file(tmp_path), tmp_path / "store", 3)
    assert not any((tmp_path / "store" / RANGES_DIR).iterdir())


def test_a_part_folder_an_interrupted_run_left_is_not_joined(tmp_path):
    """A range rewrites its part folder whole: a stale file there (here a times array) is not used."""
    path = mixed_file(tmp_path)
    stale = ranges.part_folder(ingest_task(path, tmp_path / "store"), 1) / "train" / "00000.times.npy"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    assert ingest_in(path, tmp_path / "store", 2) == ingest_drawings(ingest_task(path, tmp_path / "one"))
    assert store_files(tmp_path / "store") == store_files(tmp_path / "one")


def test_on_error_fail_names_the_bad_line_by_its_line_in_the_file(tmp_path):
    """A malformed line in a later range is reported by its line number in the file, as one pass does."""
    lines = quickdraw_lines(tmp_path / "gen")
    lines[-5] = "not json"
    path = tmp_path / "cat.ndjson"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as one_pass:
        ingest_drawings(ingest_task(path, tmp_path / "one", on_error="fail"))
    with pytest.raises(InputError) as in_ranges:
        ingest_in(path, tmp_path / "many", 3, on_error="fail")
    assert f"line {len(lines) - 4}: not valid JSON" in str(one_pass.value)
    assert str(in_ranges.value) == str(one_pass.value)


def test_a_file_whose_first_records_are_all_malformed_across_ranges_is_refused_as_in_one_pass(tmp_path):
    """1,000 malformed lines before the first drawing, spread over ranges: the same error as one pass."""
    path = mixed_file(tmp_path, ["not json"] * 1200 + quickdraw_lines(tmp_path / "gen"))
    with pytest.raises(InputError) as one_pass:
        ingest_drawings(ingest_task(path, tmp_path / "one"))
    with pytest.raises(InputError) as in_ranges:
        ingest_in(path, tmp_path / "many", 200)  # ~300 malformed lines a range
    assert "the first 1000 records are all malformed (1000 skipped; line 1:" in str(one_pass.value)
    assert str(in_ranges.value) == str(one_pass.value)


def test_a_file_without_a_valid_drawing_in_any_range_is_refused_as_in_one_pass(tmp_path):
    """No range holds a drawing: the file holds none, with the same message as one pass; the
    refused ranges are removed."""
    path = mixed_file(tmp_path, ["[1]", "{}"] * 20)
    with pytest.raises(InputError) as one_pass:
        ingest_drawings(ingest_task(path, tmp_path / "one"))
    with pytest.raises(InputError) as in_ranges:
        ingest_in(path, tmp_path / "many", 4)
    assert "holds no valid drawing" in str(one_pass.value)
    assert str(in_ranges.value) == str(one_pass.value)
    assert not any((tmp_path / "many" / RANGES_DIR).iterdir())


def test_byte_ranges_cover_the_file_in_about_its_share_of_the_workers(monkeypatch):
    """A file gets ~its share of the workers as contiguous ranges of at least MIN_RANGE_BYTES; a small one, one."""
    monkeypatch.setattr(ranges, "MIN_RANGE_BYTES", 100)
    assert byte_ranges(1000, share=1.0, workers=4) == [(0, 250), (250, 500), (500, 750), (750, None)]
    assert len(byte_ranges(1000, share=0.5, workers=8)) == 4
    assert len(byte_ranges(1000, share=1.0, workers=128)) == 10  # no range under MIN_RANGE_BYTES
    assert byte_ranges(150, share=1.0, workers=8) == [(0, None)]
    assert byte_ranges(10**6, share=0.001, workers=128) == [(0, None)]


@pytest.mark.parametrize(
    ("name", "limit", "splits"),
    [("cat.ndjson", None, True), ("cat.ndjson.gz", None, False), ("cat.bin", None, False), ("cat.ndjson", 5, False)],
)
def test_only_plain_local_ndjson_files_without_a_limit_are_read_in_ranges(tmp_path, name, limit, splits):
    """gzip cannot be entered half-way, --limit reads a file's first drawings; both read in one pass."""
    task = DrawingIngestTask(SourceFile(tmp_path / name, "cat"), 0, tmp_path, ("train",), limit, "skip", "x")
    assert splits_by_range(task) is splits
    remote = DrawingIngestTask(SourceFile("s3://bucket/cat.ndjson", "cat"), 0, tmp_path, ("train",), None, "skip", "x")
    assert not splits_by_range(remote)


def built_in_one_pass_then_ranged(tmp_path: Path, monkeypatch) -> tuple[BuildOptions, list[int]]:
    """The mixed file built in one pass into ``one``; from then on, files are read in 1 KB ranges,
    and the list returned records each range read."""
    mixed_file(tmp_path)
    options = BuildOptions(render=RenderOptions(size=24), shard_size=50, drawings=RATIO)
    build(tmp_path / "src", tmp_path / "one", options, procs=1)
    monkeypatch.setattr(ranges, "MIN_RANGE_BYTES", 1024)
    read: list[int] = []
    monkeypatch.setattr(orchestrate, "ingest_range", lambda job: read.append(job.part) or ingest_range(job))
    return options, read


def test_a_build_reads_a_large_file_in_ranges_and_writes_the_shards_one_pass_writes(tmp_path, monkeypatch):
    """With two workers a large file is read in two ranges; shards and manifest are those of one pass."""
    options, read = built_in_one_pass_then_ranged(tmp_path, monkeypatch)
    with ThreadPoolExecutor(2) as threads:
        build(tmp_path / "src", tmp_path / "ranges", options, procs=2, executor=threads)
    assert sorted(read) == [0, 1]
    assert published_files(tmp_path / "ranges") == published_files(tmp_path / "one")
    with ThreadPoolExecutor(2) as threads:  # a rerun finds the joined class in the store
        build(tmp_path / "src", tmp_path / "ranges", options, procs=2, executor=threads)
    assert sorted(read) == [0, 1]


def test_a_build_that_stops_at_a_bad_line_names_the_first_in_the_file(tmp_path, monkeypatch):
    """--on-error fail with bad lines in both ranges: the error is the earlier line's, though the
    later range meets its bad line first."""
    lines = quickdraw_lines(tmp_path / "gen", formats=("ndjson",))
    starts = np.cumsum([0] + [len(line) + 1 for line in lines])
    second = int(np.searchsorted(starts, starts[-1] // 2))  # the first line of the second range
    for bad in (second - 2, second + 1):  # malformed, and as long as the line was: the ranges stay
        lines[bad] = "x" * len(lines[bad])
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "cat.ndjson").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(ranges, "MIN_RANGE_BYTES", 1024)
    late_first = lambda job: time.sleep(0.5 if job.part == 0 else 0) or ingest_range(job)  # noqa: E731
    monkeypatch.setattr(orchestrate, "ingest_range", late_first)
    options = BuildOptions(render=RenderOptions(size=24), on_error="fail")
    with ThreadPoolExecutor(2) as threads, pytest.raises(InputError) as error:
        build(tmp_path / "src", tmp_path / "out", options, procs=2, executor=threads)
    assert f"cat.ndjson: line {second - 1}: not valid JSON" in str(error.value)


def test_a_build_that_died_before_joining_leaves_no_range_and_reruns_to_the_same_shards(tmp_path, monkeypatch):
    """Ranges packed, join not done (the worker died): the failed build removes the ranges, and the
    rerun reads the file again and writes what an uninterrupted build writes."""
    options, read = built_in_one_pass_then_ranged(tmp_path, monkeypatch)

    def died(task, parts):
        raise OSError("worker died")

    monkeypatch.setattr(orchestrate, "join_ranges", died)
    with ThreadPoolExecutor(2) as threads, pytest.raises(OutputError):
        build(tmp_path / "src", tmp_path / "ranges", options, procs=2, executor=threads)
    assert sorted(read) == [0, 1]  # both ranges were packed
    assert not (tmp_path / "ranges" / ".shardgen" / "store" / RANGES_DIR).exists()
    monkeypatch.setattr(orchestrate, "join_ranges", join_ranges)
    with ThreadPoolExecutor(2) as threads:
        build(tmp_path / "src", tmp_path / "ranges", options, procs=2, executor=threads)
    assert published_files(tmp_path / "ranges") == published_files(tmp_path / "one")
    assert not (tmp_path / "ranges" / ".shardgen" / "store" / RANGES_DIR).exists()


def test_a_rerun_removes_the_ranges_a_killed_build_left(tmp_path):
    """A build killed outright cleans nothing up: the next run of it removes its ranges first."""
    mixed_file(tmp_path)
    options = BuildOptions(render=RenderOptions(size=24), drawings=RATIO)
    build(tmp_path / "src", tmp_path / "out", options, procs=1)
    left = tmp_path / "out" / ".shardgen" / "store" / RANGES_DIR / "00000" / "0001" / "train"
    left.mkdir(parents=True)
    (left / ".00000.strokes.f8.npy.123-abc.tmp").write_bytes(b"half written")
    build(tmp_path / "src", tmp_path / "out", options, procs=1)
    assert not left.parents[2].exists()


@pytest.fixture(scope="module")
def large_ndjson(tmp_path_factory) -> Path:
    """A folder with one simplified ndjson file just over two MIN_RANGE_BYTES: two ranges at --procs 2."""
    folder = tmp_path_factory.mktemp("large")
    lines = quickdraw_lines(tmp_path_factory.mktemp("gen"), formats=("ndjson",))
    records = [json.loads(line) for line in lines]
    with open(folder / "cat.ndjson", "w") as out:
        written, number = 0, 0
        while written <= 2 * ranges.MIN_RANGE_BYTES:
            line = json.dumps({**records[number % len(records)], "key_id": str(10**15 + number)}) + "\n"
            written, number = written + out.write(line), number + 1
    return folder


@pytest.mark.slow
def test_a_build_killed_while_joining_its_ranges_reruns_to_the_one_pass_shards(large_ndjson, tmp_path):
    """SIGKILL to the whole build while a worker joins the ranges: the rerun removes what they left,
    reads the file again, and writes the shards a one-pass build writes."""
    args = ("--procs", "2", "--size", "8", "--shard-size", "20000", "--no-progress")
    kill_build_at(large_ndjson, tmp_path / "out", "ingest", 0, tmp_path / "reached", args=args)
    assert any((tmp_path / "out" / ".shardgen" / "store" / RANGES_DIR).rglob("*.npy"))  # the kill left ranges
    assert run_cli("build", large_ndjson, tmp_path / "out", *args).returncode == 0
    assert not (tmp_path / "out" / ".shardgen" / "store" / RANGES_DIR).exists()
    options = BuildOptions(render=RenderOptions(size=8), shard_size=20000)
    build(large_ndjson, tmp_path / "one", options, procs=1)
    assert published_files(tmp_path / "out") == published_files(tmp_path / "one")


def test_a_file_skipped_after_its_ranges_started_leaves_no_range_behind(tmp_path, monkeypatch):
    """--on-error skip: the first range refuses the file while the second still runs; the build
    goes on without it, and what the second range packed is removed."""
    lines = quickdraw_lines(tmp_path / "gen", formats=("ndjson",))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.ndjson").write_text("not json\n" * 1200 + "\n".join(lines) + "\n")
    (tmp_path / "src" / "good.ndjson").write_text("\n".join(lines[:10]) + "\n")
    monkeypatch.setattr(ranges, "MIN_RANGE_BYTES", 1024)
    slow_second = lambda job: time.sleep(0.5 if job.part > 0 else 0) or ingest_range(job)  # noqa: E731
    monkeypatch.setattr(orchestrate, "ingest_range", slow_second)
    options = BuildOptions(render=RenderOptions(size=16), on_error="skip")
    with ThreadPoolExecutor(4) as threads:
        result = build(tmp_path / "src", tmp_path / "out", options, procs=4, executor=threads)
    assert [entry["source"] for entry in result.manifest["skipped_files"]] == ["bad.ndjson"]
    assert not (tmp_path / "out" / ".shardgen" / "store" / RANGES_DIR).exists()
