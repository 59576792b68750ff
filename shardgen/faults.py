"""Fault injection for tests: crash, stall or fail at named points without patching internals.

``SHARDGEN_FAULT`` is read once, when this module is imported (in the parent and in every worker,
which inherit the environment). It holds ``;``-separated specs, each ``kind`` or
``kind:key=value,...``:

- ``worker-exit:after=N``: a render worker exits abruptly (as if OOM-killed) when it starts its
  chunk number ``N + 1``.
- ``sleep-per-chunk:seconds=S`` (or ``sleep-per-chunk:S``): a render worker sleeps ``S`` seconds
  per chunk, to make a build slow enough to interrupt.
- ``enospc:shard=K``: the ``K``-th shard sealed in this run (0-based, in plan order) fails to
  write with ``ENOSPC``, after its ``.partial`` file was created.
- ``readonly``: every output write of the parent fails with ``EROFS``.
- ``stop:at=POINT,n=K``: the ``K``-th time (0-based, per process) POINT is reached, write the
  file named by ``marker=PATH`` (or ``SHARDGEN_FAULT_MARKER``) and hang until killed. POINT is
  ``ingest`` (worker, arrays of a class written but not its record), ``append`` (parent, a chunk's
  fragment is in, its shard not yet sealed), ``rename`` (worker, a shard fsynced under
  ``.partial``, not yet renamed), ``upload`` (worker, DST a URL: a shard sealed in the work
  folder, not yet uploaded) or ``journal`` (parent, a shard renamed or uploaded, not yet in the
  journal).

The hooks observe: they never change what runs when. Only the process at a ``stop`` point
halts; the rest of the build goes on until the test kills it.

With the variable unset, ``ACTIVE`` is false and each call site costs one ``if`` per chunk, shard
or file, never per image.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

KINDS = ("worker-exit", "sleep-per-chunk", "enospc", "readonly", "stop")
POINTS = ("ingest", "append", "rename", "upload", "journal")


def parse(text: str | None) -> dict[str, dict[str, str]]:
    """``"stop:at=rename,n=1;readonly"`` -> ``{"stop": {"at": "rename", "n": "1"}, "readonly": {}}``."""
    specs: dict[str, dict[str, str]] = {}
    for spec in (text or "").split(";"):
        spec = spec.strip()
        if not spec:
            continue
        kind, _, rest = spec.partition(":")
        if kind not in KINDS:
            raise ValueError(f"SHARDGEN_FAULT: unknown fault {kind!r}; choose from {', '.join(KINDS)}")
        params: dict[str, str] = {}
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            params[key.strip() if sep else "value"] = value.strip() if sep else key.strip()
        specs[kind] = params
    if "stop" in specs and specs["stop"].get("at") not in POINTS:
        raise ValueError(f"SHARDGEN_FAULT: stop needs at= one of {', '.join(POINTS)}")
    return specs


FAULTS = parse(os.environ.get("SHARDGEN_FAULT"))
ACTIVE = bool(FAULTS)
_counts: dict[str, int] = {}


def _next(name: str) -> int:
    """How many times ``name`` was reached before in this process."""
    count = _counts.get(name, 0)
    _counts[name] = count + 1
    return count


def worker_chunk() -> None:
    """Called by a render worker at the start of each chunk (only when ``ACTIVE``)."""
    seen = _next("chunk")
    if "sleep-per-chunk" in FAULTS:
        params = FAULTS["sleep-per-chunk"]
        time.sleep(float(params.get("seconds", params.get("value", "0.1"))))
    if "worker-exit" in FAULTS and seen >= int(FAULTS["worker-exit"].get("after", "0")):
        os._exit(70)  # no cleanup, no exception: what the parent sees when the OOM killer strikes


def shard_write(index: int, path: Path) -> None:
    """Called before each write to shard number ``index`` of this run (by the worker sealing it)."""
    if "enospc" in FAULTS and index == int(FAULTS["enospc"].get("shard", "0")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    output_write(path)


def output_write(path: Path) -> None:
    """Called before the parent writes any output file (atomic writes, shards, the journal)."""
    if "readonly" in FAULTS:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


def point(name: str) -> None:
    """Called at the named crash points; stops here for good if ``stop:at=name`` says so."""
    spec = FAULTS.get("stop")
    if spec is None or spec.get("at") != name or _next(f"point:{name}") != int(spec.get("n", "0")):
        return
    marker = spec.get("marker") or os.environ.get("SHARDGEN_FAULT_MARKER")
    if marker:
        Path(marker).write_text(f"{name} {os.getpid()}\n")
    while True:  # wait for the test to SIGKILL the process group
        time.sleep(1)
