"""Splits from a seeded hash of key_id, and the recognized/country filters."""

from __future__ import annotations

from collections import Counter

import pytest

from shardgen.formats.select import assign_split, rejection
from shardgen.options import DrawingOptions

IDS = [str(5_000_000_000_000_000 + 7919 * n) for n in range(10_000)]


def test_the_default_puts_every_drawing_in_train():
    """Without --split-ratio these formats, which have no splits, go entirely to train."""
    assert {assign_split(key, 0, DrawingOptions().split_ratio) for key in IDS[:100]} == {"train"}


def test_splits_follow_the_ratio():
    """Over many ids, each split gets close to its share."""
    counts = Counter(assign_split(key, 0, (0.8, 0.1, 0.1)) for key in IDS)
    assert abs(counts["train"] - 8000) < 300 and abs(counts["valid"] - 1000) < 150


def test_a_split_depends_on_the_key_and_seed_only():
    """The same id gets the same split in any order; another seed deals differently."""
    ratio = (0.5, 0.25, 0.25)
    forward = {key: assign_split(key, 3, ratio) for key in IDS}
    assert {key: assign_split(key, 3, ratio) for key in reversed(IDS)} == forward
    assert {key: assign_split(key, 4, ratio) for key in IDS} != forward


@pytest.mark.parametrize(
    "meta, options, reason",
    [
        ({"recognized": False, "countrycode": "US"}, DrawingOptions(recognized_only=True), "not_recognized"),
        ({"recognized": True, "countrycode": "US"}, DrawingOptions(recognized_only=True), None),
        ({"recognized": True, "countrycode": "FR"}, DrawingOptions(countries=("US", "GB")), "country"),
        ({"recognized": False, "countrycode": "GB"}, DrawingOptions(countries=("US", "GB")), None),
    ],
)
def test_filters_name_what_leaves_a_drawing_out(meta, options, reason):
    """--recognized-only drops unrecognized drawings, --countries other countries."""
    assert rejection(meta, options) == reason
