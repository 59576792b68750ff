"""A build's layout (``.shardgen/layout.json``): its classes and where each sits in the store.

The orchestrator saves it once the inputs are ingested, before any chunk is rendered; every
worker loads it to render its chunks. It is the one record both sides read, so it is one type.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import atomic

LAYOUT_FILE = "layout.json"


def _new_build_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Layout:
    """The classes of a build, by class index, and their sample counts per split.

    ``build_id`` is new for every layout made (each run of a build makes one): workers key what
    they cache by it, so a worker that outlives a build never renders the next one from the old
    store, as a key on the file's mtime would on a filesystem with coarse timestamps.
    """

    classes: list[str]  # category names
    sources: list[str]  # source file names
    store_ids: list[int]  # where each class is in the store: its source file's position among the inputs
    counts: dict[str, list[int]]  # split -> samples of each class
    build_id: str = field(default_factory=_new_build_id)

    def save(self, state_dir: Path) -> None:
        """Write it atomically to ``state_dir``."""
        atomic.write_json(Path(state_dir) / LAYOUT_FILE, asdict(self))

    @classmethod
    def load(cls, state_dir: Path) -> Layout:
        """The layout saved in ``state_dir``."""
        return cls(**json.loads((Path(state_dir) / LAYOUT_FILE).read_text()))

    def class_starts(self, split: str) -> np.ndarray:
        """Where each class's samples start among the split's sample ids, then their total."""
        return np.concatenate([[0], np.cumsum(self.counts[split], dtype=np.int64)])
