"""The store: fast whole-split validation agrees with the per-sketch checks, and reads back exactly."""

from __future__ import annotations

import numpy as np

from shardgen.npz import object_array
from shardgen.read import MAX_COORDINATE, SourceFile
from shardgen.render import has_ink
from shardgen.store import IngestTask, StoreReader, _count_blank, _screen, ingest

from .helpers import write_npz


def _sketches() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for n in (1, 2, 5, 40):
        for _ in range(5):
            sketch = rng.integers(-50, 50, size=(n, 3)).astype(np.int16)
            sketch[:, 2] = rng.integers(0, 2, size=n)
            out.append(sketch)
    out.append(np.array([[3, 4, 1], [5, 6, 1]], dtype=np.int16))  # all pen-up: blank
    return out


def test_count_blank_matches_has_ink_sketch_by_sketch():
    """The vectorised blank count equals the number of sketches has_ink rejects."""
    sketches = _sketches()
    rows = np.concatenate(sketches)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sketches])])
    assert _count_blank(rows, offsets) == sum(not has_ink(s) for s in sketches)


def test_screen_refuses_what_it_cannot_prove_valid():
    """Floats, empty sketches and positions that could pass the bound fall back to per-sketch checks."""
    good = _sketches()
    assert _screen(good) is not None
    assert _screen([*good, np.zeros((0, 3), dtype=np.int16)]) is None
    assert _screen([*good, np.ones((2, 3), dtype=np.float32)]) is None
    huge = np.array([[2**31 - 1, 0, 0]] * (int(MAX_COORDINATE // 2**31) + 2), dtype=np.int32)
    assert _screen([*good, huge]) is None


def test_fast_and_checked_ingest_store_the_same_sketches(tmp_path):
    """A split taking the fast path reads back exactly; one invalid sketch only drops that sketch."""
    sketches = _sketches()
    bad = np.array([[np.nan, 0, 0]], dtype=np.float32)
    write_npz(tmp_path / "a.npz", train=object_array(sketches), valid=object_array([*sketches[:3], bad]))
    task = IngestTask(
        source=SourceFile(tmp_path / "a.npz", "a"),
        class_index=0,
        store_dir=tmp_path / "store",
        splits=("train", "valid"),
        limit=None,
        on_error="skip",
        fingerprint="x",
    )
    record = ingest(task)
    assert record.counts == {"train": len(sketches), "valid": 3}
    assert record.blank["train"] == sum(not has_ink(s) for s in sketches)
    assert [s["index"] for s in record.skipped] == [3]
    reader = StoreReader(tmp_path / "store", "train")
    for position, sketch in enumerate(sketches):
        strokes, index = reader.sketch(0, position)
        assert index == position and np.array_equal(strokes, sketch)
    reader.release()
    assert np.array_equal(reader.sketch(0, 0)[0], sketches[0])  # pages come back after a release
