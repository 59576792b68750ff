"""What runs in worker processes: a chunk description in, a fragment file and its size out (or,
for a shard rendered whole, the shard itself and its size and sha256).

A task never carries image data, and neither does its result: the worker reads its slice of the
plan and its sketches from the memory-mapped store, renders and encodes each one, and streams
them as tar members into the chunk's fragment file or the shard (see ``fragments``).

``SHARDGEN_BENCH_CONSTANT_IMAGE=BYTES`` is a benchmarking hook (``scripts/bench.py --ceiling``):
every image is then a constant run of ``BYTES`` bytes instead of a rendered, encoded sketch, which
measures what the rest of the pipeline costs per image.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from . import faults
from .formats.packing import ExtrasReader
from .fragments import write_fragment, write_shard
from .layout import Layout
from .npz import read_npy_header
from .options import RenderOptions
from .plan import locate, plan_path
from .reading import STROKES
from .render import color_seed, encode_image, encode_npy, render_sketch

RENDER_BATCH_BYTES = 64 << 10  # rendered images held before they are packed (see _rendered)
_CONSTANT_IMAGE = os.environ.get("SHARDGEN_BENCH_CONSTANT_IMAGE")
CONSTANT_IMAGE = b"\x89" * int(_CONSTANT_IMAGE) if _CONSTANT_IMAGE else None


@dataclass(frozen=True)
class ChunkTask:
    """Render plan positions ``[start, stop)`` of ``split``; small enough to pickle per task."""

    state_dir: Path
    build_id: str  # the layout's (see ``layout.Layout``): what the worker's caches are keyed by
    split: str
    start: int
    stop: int
    options: RenderOptions
    seed: int
    fragment: Path  # where the chunk's tar members go; for render_shard, the shard
    list_members: bool = False  # also list each member's name and size, for the shard's DALI index
    shard_index: int = -1  # for render_shard: the shard's place among this run's (see faults.shard_write)


def sample_key(split: str, class_index: int, source_index: int) -> str:
    """Unique, stable and dot-free: split, class and the sketch's index in its source file."""
    return f"{split}-{class_index:04d}-{source_index:08d}"


def init_worker(build_pid: int | None = None) -> None:
    """Process-pool initializer: one OpenCV thread per process, since processes are the parallelism.

    Workers ignore SIGINT: Ctrl-C reaches the whole process group, and only the parent should act
    on it (it cancels pending chunks and shuts the pool down). SIGTERM keeps its default action:
    the pool itself relies on it to stop the other workers after one died. With ``build_pid``, a
    worker ends itself once that process is gone (see :func:`_exit_when_gone`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    if build_pid is not None:
        threading.Thread(target=_exit_when_gone, args=(build_pid,), name="build-watch", daemon=True).start()


def _exit_when_gone(pid: int, every: float = 1.0) -> None:
    """End this worker once the build process ``pid`` has died (SIGKILLed alone, not its group).

    Nothing else would end it: an idle worker blocks on the pool's queue, whose pipe it holds both
    ends of, and the fork server it was forked from stays alive because every worker holds the
    server's liveness pipe. Checking once a second costs nothing.
    """
    while _process_alive(pid):
        time.sleep(every)
    os._exit(1)


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by its parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): existence is all we can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


# The caches below are keyed by (state folder, build id): a worker that outlives one build (a reused
# executor) must not render the next one, in the same state folder, from the old store's mappings.


@lru_cache(maxsize=8)
def _layout(state_dir: Path, build_id: str) -> tuple[Layout, dict[str, np.ndarray]]:
    layout = Layout.load(state_dir)
    if layout.build_id != build_id:  # the lock on DST keeps two builds from sharing a state folder
        raise RuntimeError(f"{state_dir} holds build {layout.build_id}, not the task's build {build_id}")
    return layout, {split: layout.class_starts(split) for split in layout.counts}


@lru_cache(maxsize=8)
def _meta_templates(state_dir: Path, build_id: str, split: str) -> list[tuple[bytes, bytes]]:
    """Per class, the JSON metadata before and after the index: one dumps per class, not per sample.

    See :func:`sample_json`, which completes them.
    """
    layout, _ = _layout(state_dir, build_id)
    templates = []
    for class_index, (category, source) in enumerate(zip(layout.classes, layout.sources)):
        head = json.dumps({"category": category, "class": class_index, "split": split}, separators=(",", ":"))
        templates.append((head[:-1].encode() + b',"index":', b',"source":' + json.dumps(source).encode()))
    return templates


def sample_json(template: tuple[bytes, bytes], source_index: int, drawing_meta: bytes) -> bytes:
    """A sample's JSON: category, class, split, index and source, then the drawing's own metadata.

    Exactly ``json.dumps(meta, separators=(",", ":"))``; ``drawing_meta`` (JSON object members, as
    the store holds them for QuickDraw files) is empty for ``.npz`` sources.
    """
    prefix, suffix = template
    return b"%s%d%s%s}" % (prefix, source_index, suffix, b"," + drawing_meta if drawing_meta else b"")


@lru_cache(maxsize=4)
def _reader(state_dir: Path, build_id: str, split: str) -> ExtrasReader:
    return ExtrasReader(state_dir / "store", split)


def render_chunk(task: ChunkTask) -> int:
    """Render one chunk of the plan into its fragment file; returns the fragment's size in bytes."""
    if faults.ACTIVE:
        faults.worker_chunk()
    # closing: a write that fails half-way also ends the members at once, releasing their mappings
    with contextlib.closing(_members(task)) as members:
        return write_fragment(task.fragment, members, task.list_members)


def render_shard(task: ChunkTask) -> tuple[int, str]:
    """Render a whole shard, the task's plan range, straight into the shard file ``task.fragment``
    (see ``fragments.write_shard``); returns its size and sha256."""
    if faults.ACTIVE:
        faults.worker_chunk()
    with contextlib.closing(_members(task)) as members:
        return write_shard(task.fragment, members, task.shard_index, task.list_members)


def _plan_slice(state_dir: Path, split: str, start: int, stop: int) -> np.ndarray:
    """Plan positions ``[start, stop)`` of ``split``, read rather than mapped: no mapping outlives the read."""
    with open(plan_path(state_dir, split), "rb") as plan:
        _, _, dtype = read_npy_header(plan)
        plan.seek(start * dtype.itemsize, os.SEEK_CUR)
        return np.frombuffer(plan.read((stop - start) * dtype.itemsize), dtype=dtype)


def _members(task: ChunkTask):
    """The chunk's samples ``(key, [(ext, data), ...])``, one at a time: image, class, metadata (and strokes)."""
    state_dir = Path(task.state_dir)
    layout, starts = _layout(state_dir, task.build_id)
    templates = _meta_templates(state_dir, task.build_id, task.split)
    store_ids = layout.store_ids
    order = _plan_slice(state_dir, task.split, task.start, task.stop)
    class_ids, positions = locate(order, starts[task.split])
    reader = _reader(state_dir, task.build_id, task.split)
    options, ext = task.options, task.options.extension
    try:
        for batch in _rendered(task, reader, store_ids, zip(class_ids.tolist(), positions.tolist())):
            for class_index, position, key, source_index, strokes, image in batch:
                meta = sample_json(templates[class_index], source_index, reader.meta(store_ids[class_index], position))
                members = [(f".{ext}", image), (".cls", b"%d" % class_index), (".json", meta)]
                if options.strokes:
                    members.append((f".{STROKES}", encode_npy(strokes)))
                yield key, members
    finally:
        reader.release()  # also when the chunk fails half-way: no mapping outlives its task


def _rendered(
    task: ChunkTask, reader: ExtrasReader, store_ids: list[int], sketches: Iterable[tuple[int, int]]
) -> Iterator[list[tuple]]:
    """Render sketches ``(class index, position)`` a batch at a time, about ``RENDER_BATCH_BYTES``
    of images a batch; each item is ``(class index, position, key, source index, strokes, image)``.

    Rendering a batch back to back and then packing it measured 4-6 us an image faster (of ~165)
    than alternating render and pack per image: each stays hot in the CPU's caches.
    """
    batch: list[tuple] = []
    pending = 0
    for class_index, position in sketches:
        store_id = store_ids[class_index]
        strokes, source_index = reader.sketch(store_id, position)
        key = sample_key(task.split, class_index, source_index)
        if CONSTANT_IMAGE is None:
            times = reader.times(store_id, position) if task.options.color == "time" else None
            image = encode_image(render_sketch(strokes, task.options, color_seed(task.seed, key), times), task.options)
        else:
            image = CONSTANT_IMAGE
        batch.append((class_index, position, key, source_index, strokes, image))
        pending += len(image)
        if pending >= RENDER_BATCH_BYTES:
            yield batch
            batch, pending = [], 0
    if batch:
        yield batch
