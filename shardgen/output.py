"""The output folder (DST): the build identity recorded there, cleanup and leftovers.

A build records what it is (inputs and options, ``.shardgen/build.json``) before it writes
anything else, so a rerun can tell whether it continues the same build or would mix two.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from . import atomic, manifest
from .errors import OptionsChangedError, UsageError
from .fragments import PARTIAL_SUFFIX, PARTS_DIR
from .read import SPLITS, SourceFile
from .write import output_error

if TYPE_CHECKING:
    from .pipeline import BuildOptions

STATE_DIR = ".shardgen"
BUILD_FILE = "build.json"


def fingerprint(sources: list[SourceFile]) -> list[dict]:
    """Identify the inputs cheaply (name, size, mtime), as make and rsync do."""
    out = []
    for source in sources:
        stat = source.path.stat()
        out.append({"file": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return out


def prepare_output(dst: Path, sources: list[SourceFile], options: BuildOptions, overwrite: bool) -> Path:
    """Check DST, refuse a rerun with other inputs or options, and record this build's identity.

    Returns the state folder (``DST/.shardgen``).
    """
    if dst.exists() and not dst.is_dir():
        raise UsageError("output must be a folder, but a file exists there", dst)
    state = dst / STATE_DIR
    identity = {"inputs": fingerprint(sources), "options": options.to_dict()}
    previous = _read_json(state / BUILD_FILE)
    if overwrite:
        clean_output(dst)
    elif previous is not None and previous != identity:
        raise OptionsChangedError(
            f"holds a build with other {describe_difference(previous, identity)}; "
            "rerun with --overwrite to replace it, or choose another output folder",
            dst,
        )
    elif previous is None and dst.exists() and any(p.name != STATE_DIR for p in dst.iterdir()):
        # (a state folder alone is a first build that stopped before recording its identity)
        raise UsageError(
            "output folder is not empty and holds no shardgen build; choose an empty folder or pass --overwrite",
            dst,
        )
    try:
        os.makedirs(state / "store", exist_ok=True)
        atomic.write_json(state / BUILD_FILE, identity)
        remove_leftovers(dst)
    except OSError as error:
        raise output_error(error, state) from None
    return state


def remove_leftovers(dst: Path) -> None:
    """Delete what an interrupted build may leave: ``*.tar.partial``, ``.NAME.tmp`` and fragment files.

    Only names shardgen itself writes are touched; a resumed build rewrites what they stood for.
    """
    state = dst / STATE_DIR
    shutil.rmtree(state / PARTS_DIR, ignore_errors=True)
    for path in dst.glob("*.tar" + PARTIAL_SUFFIX):
        path.unlink()
    for folder in (dst, state, state / "store", *(state / "store" / split for split in SPLITS)):
        for path in folder.glob(".*.tmp"):
            path.unlink()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def describe_difference(old: dict, new: dict) -> str:
    """Name what differs between two build identities, e.g. ``options (seed: 0 -> 1)``."""
    if old.get("inputs") != new.get("inputs"):
        old_files = {i["file"]: i for i in old.get("inputs", [])}
        new_files = {i["file"]: i for i in new["inputs"]}
        changed = sorted(f for f in old_files.keys() | new_files.keys() if old_files.get(f) != new_files.get(f))
        return f"inputs ({', '.join(changed[:5])}{', ...' if len(changed) > 5 else ''} changed)"
    diffs = []
    old_opts, new_opts = _flatten(old.get("options", {})), _flatten(new["options"])
    for name in sorted(old_opts.keys() | new_opts.keys()):
        if old_opts.get(name) != new_opts.get(name):
            diffs.append(f"{name}: {old_opts.get(name)} -> {new_opts.get(name)}")
    return f"options ({'; '.join(diffs)})"


def _flatten(options: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def clean_output(dst: Path) -> None:
    """Remove what a shardgen build writes in ``dst`` (shards, indexes, state), nothing else."""
    if not dst.is_dir():
        return
    for path in dst.iterdir():
        name = path.name
        if name == STATE_DIR:
            shutil.rmtree(path)
        elif name.endswith((".tar", ".tar" + PARTIAL_SUFFIX, ".wids.json")) or name == manifest.MANIFEST:
            path.unlink()
