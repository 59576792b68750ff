"""Kaggle's Doodle Recognition CSVs, simplified and raw; a bad row is listed by line, not fatal."""

from __future__ import annotations

import pytest

from shardgen.errors import InputError
from shardgen.formats import csv
from shardgen.formats.drawing import Drawing, Skip

HEADER = "countrycode,drawing,key_id,recognized,timestamp,word\n"
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
