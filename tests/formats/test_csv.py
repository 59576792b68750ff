"""Kaggle's Doodle Recognition CSVs, simplified and raw; a bad row is listed by line, not fatal."""

from __future__ import annotations

import pytest

from shardgen.errors import InputError
from shardgen.formats import csv
from shardgen.formats.drawing import Drawing, Skip
from shardgen.options import BuildOptions, RenderOptions
from shardgen.pipeline import build
from shardgen.sample import write_samples

HEADER = "countrycode,drawing,key_id,recognized,timestamp,word\n"
UNCLOSED = 'US,"[[[1,2],[3\n'  # a drawing cut short inside its quotes
ROW = 'US,"[[[167, 109, 80], [140, 194, 120]]]",5152802093400064,True,2017-03-08 21:12:07.266040,The Eiffel Tower\n'


def test_rows_read_as_kaggle_writes_them(tmp_path):
    """The drawing column is JSON, recognized is True/False, key_id stays a string."""
    path = tmp_path / "The Eiffel Tower.csv"
    path.write_text(HEADER + ROW + ROW.replace(",True,", ",False,"))
    first, second = csv.read(path)
    assert first.meta == {
        "key_id": "5152802093400064",
        "countrycode": "US",
        "recognized": True,
        "timestamp": "2017-03-08 21:12:07.266040",
        "word": "The Eiffel Tower",
    }
    assert second.meta["recognized"] is False and second.index == 1
    assert first.rows[:, :2].tolist() == [[167, 140], [-58, 54], [-29, -74]]


def test_raw_rows_carry_times(tmp_path):
    """A train_raw row's third list per stroke becomes the drawing's times."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER + 'US,"[[[1.5, 2.5], [3.0, 4.0], [0, 40]]]",7,True,2017-03-08 21:12:07,cat\n')
    (drawing,) = csv.read(path)
    assert drawing.times.tolist() == [0, 40]


@pytest.mark.parametrize(
    "row, reason",
    [
        ('US,"[[[1, 2], [3, 4]]",7,True,t,cat\n', "drawing is not valid JSON"),
        ("US,,7,True,t,cat\n", "missing drawing"),
        ('US,"[[[1, 2], [3]]]",7,True,t,cat\n', "different lengths"),
        ('US,"[[[1, 2], [3, 4]]]",,True,t,cat\n', "missing key_id"),
    ],
)
def test_a_malformed_row_is_listed_with_its_line_number(tmp_path, row, reason):
    """A bad row is skipped with its line in the file (the header is line 1) and its reason."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER + ROW + row + ROW)
    items = list(csv.read(path))
    assert [type(item) for item in items] == [Drawing, Skip, Drawing]
    assert (items[1].where, items[1].at, items[1].index) == ("line", 3, 1)
    assert reason in items[1].reason


def test_a_csv_without_a_drawing_column_is_an_input_error(tmp_path):
    """A CSV that is not Kaggle's is refused as a whole, naming the file."""
    path = tmp_path / "cat.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="cat.csv: not a QuickDraw CSV"):
        list(csv.read(path))


def test_an_unclosed_quote_skips_only_its_own_line(tmp_path):
    """A line whose quote never closes is skipped by its line number; the line after it is still read."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER + ROW + UNCLOSED + ROW + ROW)
    items = list(csv.read(path))
    assert [type(item) for item in items] == [Drawing, Skip, Drawing, Drawing]
    assert (items[1].where, items[1].at, items[1].index) == ("line", 3, 1)
    assert "not closed on its line" in items[1].reason
    assert [item.index for item in items] == [0, 1, 2, 3]


def test_consecutive_unclosed_quotes_are_each_skipped(tmp_path):
    """Two broken lines in a row are two skips, each with its own line; the rows around them are kept."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER + ROW + UNCLOSED + UNCLOSED + ROW)
    items = list(csv.read(path))
    assert [type(item) for item in items] == [Drawing, Skip, Skip, Drawing]
    assert [items[1].at, items[2].at] == [3, 4]


def test_an_unclosed_quote_on_the_last_line_is_skipped_as_one(tmp_path):
    """A broken last line gets the same reason as a broken line anywhere else."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER + ROW + UNCLOSED)
    drawing, skip = csv.read(path)
    assert (skip.at, skip.index) == (3, 1) and "not closed on its line" in skip.reason


def test_an_escaped_quote_stays_inside_its_field(tmp_path):
    """A doubled quote inside a quoted field is one quote character, not the field's end."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER + ROW.replace(",The Eiffel Tower\n", ',"The ""Eiffel"" Tower"\n') + ROW)
    first, second = csv.read(path)
    assert first.meta["word"] == 'The "Eiffel" Tower' and second.index == 1


def test_blank_lines_are_no_records_but_keep_their_line_numbers(tmp_path):
    """A blank line yields nothing, and a bad row after it is still named by its line in the file."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER + "\n" + ROW + "\n" + UNCLOSED + ROW)
    items = list(csv.read(path))
    assert [type(item) for item in items] == [Drawing, Skip, Drawing]
    assert (items[1].at, items[1].index) == (5, 3)


def test_a_header_with_an_unclosed_quote_is_an_input_error(tmp_path):
    """A header whose quote never closes is refused rather than read with the rows after it."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER.replace(",word", ',"word') + ROW + ROW)
    with pytest.raises(InputError, match="cat.csv: not a QuickDraw CSV: its header line is not a CSV row"):
        list(csv.read(path))


def test_every_data_line_is_kept_or_counted_as_skipped(tmp_path):
    """Under the default on_error, a build keeps or lists as skipped each data line of a broken CSV."""
    write_samples(tmp_path / "src", categories=1, per_split=4, seed=2, format="csv")
    path = tmp_path / "src" / "circle.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = UNCLOSED  # line 3 of the file
    path.write_text("".join(lines))
    result = build(tmp_path / "src", tmp_path / "out", BuildOptions(render=RenderOptions(size=16)), procs=1)
    assert [(s["source"], s["line"]) for s in result.manifest["skipped"]] == [("circle.csv", 3)]
    assert result.images + len(result.manifest["skipped"]) == len(lines) - 1


def test_many_unclosed_quotes_are_each_one_skip_read_once(tmp_path, monkeypatch):
    """Thousands of broken lines are as many skips, and no line is parsed twice (no re-reading)."""
    path = tmp_path / "cat.csv"
    path.write_text(HEADER + UNCLOSED * 5000 + ROW)
    parsed: list[str] = []
    real_reader = csv.csv.reader

    def counting_reader(lines, *args, **kwargs):
        lines = list(lines)
        parsed.extend(lines)
        return real_reader(lines, *args, **kwargs)

    monkeypatch.setattr(csv.csv, "reader", counting_reader)
    items = list(csv.read(path))
    assert [item.at for item in items if isinstance(item, Skip)] == list(range(2, 5002))
    assert isinstance(items[-1], Drawing) and len(parsed) == 5002  # the header and every line, once
