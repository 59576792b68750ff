"""Errors cross process boundaries intact: workers raise them, the parent reports them."""

from __future__ import annotations

import inspect
import pickle

import pytest

import shardgen
from shardgen import errors
from shardgen.errors import InputError, SketchError, UsageError


def test_sketch_errors_survive_pickling_with_message_and_fields():
    """A worker's SketchError unpickles in the parent with the same message, path and sketch location."""
    sketch = pickle.loads(pickle.dumps(SketchError("empty sketch (no points)", "a.npz", "train", 4)))
    assert str(sketch) == "a.npz: train[4]: empty sketch (no points)"
    assert (sketch.reason, sketch.source, sketch.split, sketch.index) == (
        "empty sketch (no points)",
        "a.npz",
        "train",
        4,
    )


@pytest.mark.parametrize("error", [InputError("not a zip file", "/x/b.npz"), UsageError("no path here")])
def test_errors_survive_pickling(error):
    """An error unpickles as the same type with the same message and path."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert copy.message == error.message and copy.path == error.path


def test_every_error_is_exported():
    """Every exception class of shardgen.errors can be imported from shardgen itself."""
    defined = {
        name for name, value in vars(errors).items() if inspect.isclass(value) and issubclass(value, BaseException)
    }
    assert defined <= set(shardgen.__all__)
    assert all(getattr(shardgen, name) is getattr(errors, name) for name in defined)
