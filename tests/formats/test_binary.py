"""Google's binary format: records read back exactly; a record cut short is reported by byte offset."""

from __future__ import annotations

import numpy as np

from shardgen.formats import binary
from shardgen.formats.binary import COUNT, HEADER
from shardgen.formats.drawing import Drawing, Skip
from shardgen.formats.writers import write_bin

META = {"key_id": 2**64 - 1, "countrycode": "GB", "recognized": True, "timestamp": 1488400000}
STROKES = [np.array([[0, 5], [10, 5], [20, 9]]), np.array([[255, 255]])]


def record_size(strokes) -> int:
    return HEADER.size + sum(COUNT.size + 2 * len(s) for s in strokes)


def test_records_read_back_with_their_metadata(tmp_path):
    """Strokes, a u64 key_id (as an exact string), country, recognized and timestamp survive a round trip."""
    path = tmp_path / "cat.bin"
    write_bin(path, [(STROKES, None, META), (STROKES, None, {**META, "recognized": False})])
    first, second = binary.read(path)
    assert first.meta == {**META, "key_id": str(2**64 - 1)}
    assert second.meta["recognized"] is False and second.index == 1
    assert np.cumsum(first.rows[:, :2], axis=0).tolist() == [[0, 5], [10, 5], [20, 9], [255, 255]]
    assert first.rows[:, 2].tolist() == [0, 0, 1, 1]


def test_a_truncated_record_is_reported_with_its_byte_offset(tmp_path):
    """A file cut inside its second record yields the first drawing, then the offset of the cut record."""
    path = tmp_path / "cat.bin"
    write_bin(path, [(STROKES, None, META)] * 2)
    path.write_bytes(path.read_bytes()[: record_size(STROKES) + 20])
    items = list(binary.read(path))
    assert isinstance(items[0], Drawing)
    assert items[1] == Skip("offset", record_size(STROKES), "truncated record (the file ends inside it)", 1)
    assert len(items) == 2


def test_a_record_without_strokes_is_skipped_and_the_next_one_read(tmp_path):
    """A well-formed record of zero strokes is listed by offset; reading goes on after it."""
    path = tmp_path / "cat.bin"
    write_bin(path, [([], None, META), (STROKES, None, META)])
    skip, drawing = binary.read(path)
    assert (skip.where, skip.at, skip.reason) == ("offset", 0, "no strokes")
    assert isinstance(drawing, Drawing) and drawing.index == 1
