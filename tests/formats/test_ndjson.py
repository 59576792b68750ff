"""Google's ndjson, plain or gzipped, streamed line by line; malformed lines are listed, not fatal."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from shardgen.formats import ndjson
from shardgen.formats.drawing import Drawing, Skip

GOOD = {
    "word": "cat",
    "countrycode": "US",
    "timestamp": "2017-03-01 20:41:36.70725 UTC",
    "recognized": True,
    "key_id": "5891796615823360",
    "drawing": [[[0, 10, 20], [5, 5, 9]]],
}


def write_lines(path: Path, lines: list[str]) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["cat.ndjson", "cat.ndjson.gz"])
def test_plain_and_gzipped_files_read_alike(tmp_path, name):
    """The same lines give the same drawings and metadata, gzipped or not."""
    path = write_lines(tmp_path / name, [json.dumps(GOOD), json.dumps({**GOOD, "key_id": "7"})])
    items = list(ndjson.read(path))
    assert [item.index for item in items] == [0, 1]
    assert items[0].meta == {k: GOOD[k] for k in ("key_id", "countrycode", "recognized", "timestamp", "word")}
    assert items[0].rows.tolist() == [[0, 5, 0], [10, 0, 0], [10, 4, 1]]


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"word": "cat", "drawing": [[[1], [1]]', "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "drawing"}), "missing drawing"),
        (json.dumps({**GOOD, "drawing": []}), "no strokes"),
        (json.dumps({**GOOD, "drawing": [[[1, 2], [3]]]}), "different lengths"),
        (json.dumps({**GOOD, "drawing": [[[1, 300], [3, 4]]]}), "integers 0-255"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "key_id"}), "missing key_id"),
        (b"\xff\xfe not utf-8".decode("latin1"), "not valid JSON"),
    ],
)
def test_a_malformed_line_is_listed_with_its_line_number(tmp_path, line, reason):
    """A bad line between two good ones is skipped with its line number and reason; the others are read."""
    path = tmp_path / "cat.ndjson"
    path.write_bytes(b"".join(text.encode("latin1") + b"\n" for text in (json.dumps(GOOD), line, json.dumps(GOOD))))
    items = list(ndjson.read(path))
    assert [type(item) for item in items] == [Drawing, Skip, Drawing]
    skip = items[1]
    assert (skip.where, skip.at, skip.index) == ("line", 2, 1)
    assert reason in skip.reason
    assert items[2].index == 2


def test_an_overlong_line_is_skipped_without_being_held(tmp_path, monkeypatch):
    """A line longer than the bound is skipped (read in bounded pieces), and the next line is still read."""
    monkeypatch.setattr(ndjson, "MAX_LINE", 400)
    path = write_lines(tmp_path / "cat.ndjson", ["x" * 1000, json.dumps({**GOOD, "drawing": [[[1], [2]]]})])
    items = list(ndjson.read(path))
    assert isinstance(items[0], Skip) and "longer than" in items[0].reason
    assert isinstance(items[1], Drawing) and items[1].index == 1


def test_blank_lines_are_neither_drawings_nor_skips(tmp_path):
    """An empty line (say, a trailing one) is not reported; positions still count it."""
    path = write_lines(tmp_path / "cat.ndjson", [json.dumps(GOOD), "", json.dumps(GOOD)])
    assert [item.index for item in ndjson.read(path)] == [0, 2]


def range_lines(path: Path, cuts: list[int]) -> list[tuple[int, str]]:
    """(line number in the file, what it was) of every item read range by range, the ranges cut at ``cuts``."""
    bounds = [0, *cuts, None]
    items, base = [], 0
    for start, stop in zip(bounds, bounds[1:]):
        lines = ndjson.LineRange(start, stop)
        items += [(base + item.index, type(item).__name__) for item in ndjson.read(path, lines)]
        if lines.count:  # where its first line begins, the file has `base` lines before it
            assert ndjson.lines_before(path, lines.first) == base
        base += lines.count
    return items


@pytest.mark.parametrize("ending", ["\n", ""], ids=["newline-at-end", "no-newline-at-end"])
def test_adjacent_byte_ranges_read_every_line_once_wherever_they_are_cut(tmp_path, ending):
    """Cut anywhere, even inside a line or at a line's first byte, ranges read each line exactly once."""
    lines = [json.dumps(GOOD), "", "not json", json.dumps({**GOOD, "key_id": "7"}), "", json.dumps(GOOD)]
    path = tmp_path / "cat.ndjson"
    path.write_text("\n".join(lines) + ending)
    whole = [(item.index, type(item).__name__) for item in ndjson.read(path)]
    size = path.stat().st_size
    for first in range(1, size):
        assert range_lines(path, [first]) == whole
        assert range_lines(path, [first, min(size, first + 7)]) == whole


def test_a_range_that_starts_inside_an_overlong_line_skips_it_in_bounded_reads(tmp_path, monkeypatch):
    """A line over MAX_LINE that spans a cut is one skipped line, listed by the range it starts in."""
    monkeypatch.setattr(ndjson, "MAX_LINE", 64)
    path = tmp_path / "cat.ndjson"
    path.write_text(
        json.dumps(GOOD)[:20] + "\n" + "x" * 300 + "\n" + json.dumps({**GOOD, "drawing": [[[1], [2]]]})[:60] + "\n"
    )
    whole = [(item.index, type(item).__name__) for item in ndjson.read(path)]
    assert whole == [(0, "Skip"), (1, "Skip"), (2, "Skip")]
    for first in (21, 22, 100, 321, 322):
        assert range_lines(path, [first]) == whole
