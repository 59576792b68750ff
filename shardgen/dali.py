"""NVIDIA DALI index files (``--dali-index``): ``{shard}.idx`` beside each shard, from offsets known
while writing, so that ``fn.readers.webdataset(paths=..., index_paths=...)`` need not scan the
shards and nobody has to run DALI's ``wds2idx`` over them afterwards.

The format is the one ``wds2idx`` writes (DALI's ``tools/wds2idx.py``) and the reader parses
(``ParseIndexFile`` in ``dali/operators/reader/loader/webdataset_loader.cc``): a line
``v1.2 SAMPLES``, then one line per sample in archive order listing each of its members as
``EXT DATA_OFFSET SIZE NAME``, all separated by single spaces. ``EXT`` is everything after the first
dot of the name (``strokes.npy``), and ``DATA_OFFSET`` is where the member's bytes start (just after
its 512-byte header), a multiple of 512.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from . import atomic
from .tar import BLOCK

VERSION = "v1.2"
SUFFIX = ".idx"
MEMBERS_SUFFIX = ".members"


def index_name(shard_name: str) -> str:
    """``train-000000.tar`` -> ``train-000000.idx``, the name ``wds2idx`` gives it by default."""
    return shard_name.split(".", 1)[0] + SUFFIX


def index_path(shard: Path) -> Path:
    """The index beside the shard at ``shard``."""
    return Path(shard).with_name(index_name(Path(shard).name))


def member_offsets(members: Iterable[tuple[str, int]], start: int = 0) -> Iterator[tuple[str, int, int]]:
    """``(name, data offset, size)`` of tar members ``(name, size)`` written back to back from ``start``."""
    offset = start
    for name, size in members:
        yield name, offset + BLOCK, size
        offset += BLOCK + size + (-size % BLOCK)


def index_text(members: Iterable[tuple[str, int, int]]) -> str:
    """The ``.idx`` text for a shard's members ``(name, data offset, size)``, in archive order."""
    samples: list[list[str]] = []
    last_key = None
    for name, offset, size in members:
        key, ext = name.split(".", 1)
        if key != last_key:
            samples.append([])
            last_key = key
        samples[-1].append(f"{ext} {offset} {size} {name}")
    return f"{VERSION} {len(samples)}\n" + "".join(" ".join(sample) + "\n" for sample in samples)


def members_path(piece: Path) -> Path:
    """Where the worker that writes a piece of a shard lists that piece's member names and sizes."""
    return Path(piece).with_name(Path(piece).name + MEMBERS_SUFFIX)


def write_members(path: Path, members: Iterable[tuple[str, int]]) -> None:
    """List tar members ``(name, size)``, one ``NAME SIZE`` line each (names hold no spaces)."""
    Path(path).write_text("".join(f"{name} {size}\n" for name, size in members))


def read_members(path: Path) -> list[tuple[str, int]]:
    return [(name, int(size)) for name, size in (line.split(" ") for line in Path(path).read_text().splitlines())]


def pieces_members(pieces: list[Path], starts: list[int]) -> Iterator[tuple[str, int, int]]:
    """``(name, data offset, size)`` of a shard joined from ``pieces`` that begin at ``starts``,
    from each piece's member list."""
    for piece, start in zip(pieces, starts):
        yield from member_offsets(read_members(members_path(piece)), start)


def write_index(shard: Path, members: Iterable[tuple[str, int, int]]) -> None:
    """Write ``shard``'s ``.idx`` from its members ``(name, data offset, size)``, in archive order."""
    atomic.write_bytes(index_path(shard), index_text(members).encode())
