"""The layout record: what the orchestrator writes and every worker reads, as one typed value."""

from __future__ import annotations

import numpy as np

from shardgen.layout import Layout

CLASSES = {
    "classes": ["cat", "dog"],
    "sources": ["cat.npz", "dog.ndjson"],
    "store_ids": [0, 2],
    "counts": {"train": [3, 4], "valid": [1, 0]},
}


def test_a_layout_round_trips_through_its_file(tmp_path):
    """Layout.load gives back exactly what Layout.save wrote, build id included."""
    layout = Layout(**CLASSES)
    layout.save(tmp_path)
    assert Layout.load(tmp_path) == layout


def test_every_layout_made_gets_a_build_id_of_its_own():
    """Two layouts of the same classes differ by build id: the id names one build, not its contents."""
    assert Layout(**CLASSES).build_id != Layout(**CLASSES).build_id


def test_class_starts_are_where_each_class_begins_then_the_total():
    """A split's class starts are the running sums of its class counts, from 0 to the split's size."""
    assert np.array_equal(Layout(**CLASSES).class_starts("train"), [0, 3, 7])
