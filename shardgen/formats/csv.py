"""Kaggle's "Quick, Draw! Doodle Recognition" CSVs (``train_simplified/``, ``train_raw/``).

Columns ``countrycode,drawing,key_id,recognized,timestamp,word`` under a header row, ``drawing``
a JSON string in the ndjson layout and ``recognized`` written ``True``/``False``. Rows are read one
at a time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from ..npz import open_regular_file
from .drawing import Drawing, Malformed, Skip
from .ndjson import MAX_LINE, parse_fields

FLAGS = {"True": True, "False": False}


def read(path: Path) -> Iterator[Drawing | Skip]:
    """Every data row of ``path``, as a drawing or as the reason it was skipped."""
    # Raw drawings exceed csv's default field limit of 128 KiB; the limit is per process, and
    # every CSV this process reads wants the same one.
    csv.field_size_limit(MAX_LINE)
    with open_regular_file(path) as raw:
        # A stray byte spoils one field, not the rest of the file.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        rows = csv.reader(text)
        header = next(rows, None)
        if header is None or "drawing" not in header or "key_id" not in header:
            raise InputError("not a QuickDraw CSV: the header names no drawing and key_id columns", path)
        index, line = 0, rows.line_num + 1
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as error:
                yield Skip("line", line, f"not a CSV row ({error})", index)
            else:
                try:
                    if row:
                        yield _parse(dict(zip(header, row)), index)
                except Malformed as error:
                    yield Skip("line", line, error.reason, index)
            index, line = index + 1, rows.line_num + 1


def _parse(fields: dict, index: int) -> Drawing:
    record = {name: value for name, value in fields.items() if value != ""}
    if "recognized" in record:
        record["recognized"] = FLAGS.get(record["recognized"], record["recognized"])
    if "drawing" in record:
        try:
            record["drawing"] = json.loads(record["drawing"])
        except ValueError as error:
            raise Malformed(f"drawing is not valid JSON ({error})") from None
    return parse_fields(record, index)
