"""Read adapters for the QuickDraw formats Google and Kaggle ship (``read.DRAWING_FORMATS``).

Every reader has one interface: ``read(path)`` yields, in file order, a :class:`Drawing` (stroke-3
rows, per-row times for raw drawings, metadata) or a :class:`Skip` (where and why a record was
left out), streaming the file; a file that cannot be read at all raises ``InputError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ..read import DRAWING_FORMATS, input_suffix
from . import binary, csv, ndjson
from .drawing import Drawing, Skip

Reader = Callable[[Path], Iterator[Drawing | Skip]]
READERS: dict[str, Reader] = {"ndjson": ndjson.read, "bin": binary.read, "csv": csv.read}


def is_drawing_file(path: Path | str) -> bool:
    """Whether ``path`` is a QuickDraw file (as opposed to a sketch-rnn ``.npz``)."""
    return input_suffix(path) in DRAWING_FORMATS


def reader_for(path: Path) -> Reader:
    """The reader of a QuickDraw file, chosen by its name."""
    suffix = input_suffix(path)
    if suffix not in DRAWING_FORMATS:
        raise ValueError(f"{path} is not a QuickDraw file")
    return READERS[DRAWING_FORMATS[suffix]]
