"""The read stage: find input files, name their categories, and validate their sketches.

An input adapter turns one file into ``{split: [stroke-3 array, ...]}``: ``ADAPTERS`` holds the
one for sketch-rnn ``.npz`` files. The QuickDraw formats (``DRAWING_FORMATS``) have no splits and
are streamed drawing by drawing by the readers in ``shardgen.formats``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, SketchError, UsageError, reason
from .location import Location, is_storage_error, is_url
from .npz import object_array, read_npz
from .options import SPLITS

STROKE_DTYPES = (np.int16, np.int32, np.float32, np.float64)
# Positions beyond this lose sub-pixel precision in float64 arithmetic; no real sketch comes close.
MAX_COORDINATE = 1e12
# QuickDraw files by name ending, as Google and Kaggle ship them -> the reader in shardgen.formats.
DRAWING_FORMATS = {".ndjson": "ndjson", ".ndjson.gz": "ndjson", ".bin": "bin", ".csv": "csv"}
# Prefixes of Google's download names: full_simplified_cat.ndjson, full_raw_cat.ndjson, ...
CATEGORY_PREFIXES = r"^(sketchrnn_|full_simplified_|full_raw_|full_binary_)"


@dataclass(frozen=True)
class SourceFile:
    """One input file and the category it holds; ``path`` is a local path or an fsspec URL."""

    path: Path | str
    category: str
    storage_options: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.name if isinstance(self.path, Path) else self.path.rsplit("/", 1)[-1]

    @property
    def folder(self) -> Location:
        """Where the file lives, to open or fingerprint it (see :mod:`shardgen.location`)."""
        parent = self.path.parent if isinstance(self.path, Path) else self.path.rsplit("/", 1)[0]
        return Location.of(parent, self.storage_options)


def input_suffix(path: Path | str) -> str | None:
    """The name ending that says which reader reads ``path`` (``.npz``, ``.ndjson.gz``, ...), or ``None``;
    ``path`` may be a URL."""
    name = path.name if isinstance(path, Path) else str(path).rsplit("/", 1)[-1]
    matches = [suffix for suffix in (*ADAPTERS, *DRAWING_FORMATS) if name.endswith(suffix)]
    return max(matches, key=len, default=None)


def category_name(path: Path) -> str:
    """``cat.npz``, ``sketchrnn_cat.full.npz``, ``full_simplified_cat.ndjson``, ``cat.bin`` and
    ``cat.csv`` all hold category ``cat``; other characters (``The Eiffel Tower``) are kept."""
    suffix = input_suffix(path)
    stem = path.name[: -len(suffix)] if suffix else path.stem
    stem = re.sub(r"\.full$", "", stem)
    return re.sub(CATEGORY_PREFIXES, "", stem)


def discover(src: Path | str, storage_options: dict | None = None) -> list[SourceFile]:
    """All input files (``*.npz`` and the QuickDraw formats) directly in ``src`` (a folder or an
    fsspec URL), sorted by category.

    Entries that are not regular files (a dangling symlink, a FIFO, a folder) are kept: reading
    them fails with an error naming them, so a category is never dropped without a word.
    """
    if is_url(src):
        return _discover_url(str(src), storage_options or {})
    src = Path(src)
    if not src.exists():
        raise UsageError("input folder does not exist", src)
    if not src.is_dir():
        raise UsageError("input must be a folder of sketch files, not a file", src)
    # Not only regular files: a dangling symlink or a FIFO named like an input fails to read with an
    # error naming it, so a category is never dropped without a word.
    files = sorted(p for p in src.glob("*") if input_suffix(p))
    return _sources(src, files, {})


def _discover_url(src: str, storage_options: dict) -> list[SourceFile]:
    folder = Location.of(src, storage_options)
    try:
        names = folder.list() if folder.is_dir() else None
    except Exception as error:
        if not is_storage_error(error):
            raise
        raise InputError(f"cannot list the input folder: {reason(error)}", src) from None
    if names is None:
        raise UsageError("input folder does not exist (or is a file)", src)
    return _sources(src, [folder.url(name) for name in names if input_suffix(Path(name))], storage_options)


def _sources(src: Path | str, files: list, storage_options: dict) -> list[SourceFile]:
    if not files:
        raise UsageError(
            "no .npz files (nor .ndjson, .ndjson.gz, .bin, .csv) found in the input folder; point SRC at the "
            "folder holding the sketch files, or write sample ones with `shardgen sample DIR`",
            src,
        )
    for path in files:
        name = Path(str(path)).name
        if not category_name(Path(name)):
            raise UsageError(
                f"{name} gives no category name (what is left without sketchrnn_, .full and .npz "
                "is empty); rename it after its category, e.g. cat.npz",
                src,
            )
    sources = sorted(
        (SourceFile(p, category_name(Path(str(p))), storage_options) for p in files), key=lambda s: s.category
    )
    seen: dict[str, SourceFile] = {}
    for source in sources:
        if source.category in seen:
            raise UsageError(
                f"{source.name} and {seen[source.category].name} both hold category "
                f"{source.category!r}; keep one of them",
                src,
            )
        seen[source.category] = source
    return sources


def read_sketchrnn_npz(path: Path, splits: Sequence[str]) -> dict[str, np.ndarray]:
    """sketch-rnn ``.npz``: keys ``train``/``valid``/``test``, each a 1-D object array of sketches."""
    arrays = read_npz(path, keys=list(SPLITS))
    if not arrays:
        raise InputError(f"has none of the keys {', '.join(SPLITS)}; is it a sketch-rnn .npz?", path)
    result: dict[str, np.ndarray] = {}
    for split in splits:
        if split not in arrays:
            continue
        array = arrays[split]
        if array.dtype != object:
            # A numeric (n, m, 3) array (all sketches the same length) is a valid, if rare, layout.
            if array.ndim == 3:
                array = object_array(list(array))
            else:
                raise InputError(
                    f"{split}: expected an object array of sketches, got {array.dtype} {array.shape}",
                    path,
                )
        array = array.reshape(-1)
        for index, item in enumerate(array):
            # Sketch-rnn files hold arrays (some tools pickle lists of rows); anything else, such as
            # strings or dicts, means this is not a sketch file at all.
            if not isinstance(item, (np.ndarray, list, tuple)):
                raise InputError(
                    f"{split}[{index}] is a {type(item).__name__}, not a stroke array; is it a sketch-rnn .npz?",
                    path,
                )
        result[split] = array
    return result


ADAPTERS: dict[str, Callable[[Path, Sequence[str]], dict[str, np.ndarray]]] = {
    ".npz": read_sketchrnn_npz,
}


def as_sketch_array(sketch: object) -> object:
    """Lists of rows (as some tools pickle sketches) become arrays; anything else is returned as is."""
    if isinstance(sketch, (list, tuple)):
        try:
            return np.asarray(sketch)
        except ValueError:  # ragged rows
            return sketch
    return sketch


def validate_sketch(sketch: object) -> str | None:
    """Return why ``sketch`` cannot be rendered, or ``None`` when it is a usable stroke-3 array."""
    if not isinstance(sketch, np.ndarray):
        return f"not an array but a {type(sketch).__name__}"
    if sketch.ndim != 2 or sketch.shape[1] != 3:
        return f"shape {sketch.shape} is not (n, 3)"
    if sketch.shape[0] == 0:
        return "empty sketch (no points)"
    if sketch.dtype.kind not in "iuf":
        return f"dtype {sketch.dtype} is not numeric"
    if sketch.dtype.kind == "f" and not np.isfinite(sketch).all():
        return "contains NaN or infinite values"
    positions = np.abs(np.cumsum(sketch[:, :2], axis=0, dtype=np.float64))
    if not positions.max() <= MAX_COORDINATE:  # also catches a NaN, which compares false
        return f"coordinates exceed {MAX_COORDINATE:g}"
    return None


def split_sketches(by_split: dict, splits: Sequence[str], limit: int | None) -> Iterator[tuple[str, Sequence]]:
    """``(split, sketches)`` for each of ``splits`` that ``by_split`` holds, at most ``limit`` sketches each."""
    for split in splits:
        sketches = by_split.get(split)
        if sketches is not None:
            yield split, sketches if limit is None else sketches[:limit]


def valid_sketches(
    sketches: Sequence, source: str, split: str, on_error: str, skipped: list[dict]
) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, sketch array)`` for each valid sketch of ``source``'s ``split``; an invalid one
    raises a :class:`SketchError` with ``on_error="fail"``, and is otherwise listed in ``skipped``."""
    for index, raw in enumerate(sketches):
        sketch = as_sketch_array(raw)
        reason = validate_sketch(sketch)
        if reason is None:
            assert isinstance(sketch, np.ndarray)  # all that validate_sketch accepts
            yield index, sketch
        elif on_error == "fail":
            raise SketchError(reason, source, split, index)
        else:
            skipped.append({"source": source, "split": split, "index": index, "reason": reason})


def stroke_dtype(sketches: Sequence[np.ndarray]) -> np.dtype:
    """The narrowest of int16/int32/float32/float64 that holds every sketch exactly."""
    if not sketches:
        return np.dtype(np.int16)
    dtype = np.result_type(*{s.dtype for s in sketches})
    for candidate in STROKE_DTYPES:
        if np.can_cast(dtype, candidate, casting="safe"):
            return np.dtype(candidate)
    return np.dtype(np.float64)
