"""Errors cross process boundaries intact: workers raise them, the parent reports them."""

from __future__ import annotations

import pickle

from shardgen.errors import InputError, SketchError, UsageError


def test_errors_survive_pickling_with_message_and_fields():
    """A worker's error unpickles in the parent with the same message, path and sketch location."""
    sketch = pickle.loads(pickle.dumps(SketchError("empty sketch (no points)", "a.npz", "train", 4)))
    assert str(sketch) == "a.npz: train[4]: empty sketch (no points)"
    assert (sketch.reason, sketch.source, sketch.split, sketch.index) == (
        "empty sketch (no points)",
        "a.npz",
        "train",
        4,
    )
    for error in (InputError("not a zip file", "/x/b.npz"), UsageError("no path here")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.message == error.message and copy.path == error.path
