"""Kaggle's "Quick, Draw! Doodle Recognition" CSVs (``train_simplified/``, ``train_raw/``).

Columns ``countrycode,drawing,key_id,recognized,timestamp,word`` under a header row, ``drawing``
a JSON string in the ndjson layout and ``recognized`` written ``True``/``False``. Rows are read one
at a time, each from its own line: no QuickDraw record spans lines, so a line whose quote is never
closed is skipped by itself rather than swallowing the lines after it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputError
from ..npz import open_regular_file
from .drawing import Drawing, Malformed, Skip
from .ndjson import MAX_LINE, parse_fields

FLAGS = {"True": True, "False": False}
UNCLOSED = "not a CSV row (a quoted field is not closed on its line)"
LINE_ENDS = ("\n", "\r")


def read(path: Path) -> Iterator[Drawing | Skip]:
    """Every data row of ``path``, as a drawing or as the reason it was skipped."""
    # Raw drawings exceed csv's default field limit of 128 KiB; the limit is per process, and
    # every CSV this process reads wants the same one.
    csv.field_size_limit(MAX_LINE)
    with open_regular_file(path) as raw:
        # A stray byte spoils one field, not the rest of the file.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
        records = _line_records(text)
        header, problem = next(records, ([], ""))
        if header is None:
            raise InputError(f"not a QuickDraw CSV: its header line is {problem}", path)
        if "drawing" not in header or "key_id" not in header:
            raise InputError("not a QuickDraw CSV: the header names no drawing and key_id columns", path)
        for index, (row, problem) in enumerate(records):
            line = index + 2  # the header is line 1
            if row is None:
                yield Skip("line", line, problem, index)
            elif row:  # a blank line is no record
                try:
                    yield _parse(dict(zip(header, row)), index)
                except Malformed as error:
                    yield Skip("line", line, error.reason, index)


def _line_records(lines: Iterable[str]) -> Iterator[tuple[list[str] | None, str]]:
    """Each line of ``lines`` as one CSV record: ``(fields, "")``, or ``(None, why)`` if it is not one.

    Each line is parsed on its own (no QuickDraw record spans lines): a quote that a line never
    closes then costs that line only. One reader over the whole text would take every line after
    it into the field, up to the next quote, and read the rest of the file again for each such line.
    """
    for line in lines:
        try:
            row = next(csv.reader((line,)), [])
        except csv.Error as error:
            yield None, f"not a CSV row ({error})"
            continue
        if row and row[-1].endswith(LINE_ENDS):  # its line break fell inside a quoted field
            yield None, UNCLOSED
        else:
            yield row, ""


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
