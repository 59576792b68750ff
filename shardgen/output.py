"""The output folder (DST): the lock, the build identity recorded there, what shardgen wrote, cleanup.

A build holds an exclusive lock on DST while it runs, and records what it is (inputs and options,
``.shardgen/build.json``) before it writes anything else, so a rerun can tell whether it continues
the same build or would mix two. It also records, before writing them, the names of the files it
writes in DST (``.shardgen/outputs.json``); the journal and the manifest list its shards. Those
records are all ``--overwrite`` deletes: a file no record names is the user's and stays. A feature
that writes another file into DST (a dataset card, an index beside each shard) adds its names with
:func:`record_outputs` before writing them and, so that they are known once ``.shardgen`` is gone,
lists them under the manifest's ``"files"``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import atomic, card, manifest
from .errors import OptionsChangedError, OutputLockedError, UsageError
from .fragments import PARTS_DIR, partial_target
from .identity import comparable_identity, describe_difference, fingerprint
from .location import Location, is_storage_error, storage_error
from .objectstore import SEALED_DIR, RecordJournal
from .read import SPLITS, SourceFile
from .store import RANGES_DIR
from .write import Journal, ShardRecord, output_error

if TYPE_CHECKING:
    from .options import BuildOptions

STATE_DIR = ".shardgen"
BUILD_FILE = "build.json"
JOURNAL_FILE = "journal.jsonl"
OUTPUTS_FILE = "outputs.json"  # names of the files this build writes in DST, recorded before writing
OWNER_FILE = "owner.json"  # pid and command of the build holding the lock, to name it to a second one
# Names only shardgen gives files: their partial and temp files are an interrupted build's leftovers.
_SPLIT = "|".join(SPLITS)
_CARD_TEMP = re.compile(rf"\.{re.escape(card.CARD)}\.{atomic.WRITER_TAG}\.tmp")  # the dataset card, being written
_OUR_NAMES = re.compile(rf"(?:{_SPLIT})-\d{{6}}\.tar|(?:{_SPLIT})\.wids\.json|{re.escape(manifest.MANIFEST)}")


@contextlib.contextmanager
def locked(output: Location, state: Path) -> Iterator[None]:
    """Hold an exclusive lock on DST (created if missing; for a URL, on its local work folder
    ``state``) while a build writes there.

    ``flock`` on the folder itself: the OS drops it when the process dies, even by SIGKILL, so no
    stale lock survives, and nothing a build deletes (``--overwrite`` empties ``.shardgen``) can
    take the lock with it. A second build is refused at once, naming the running one.
    """
    dst = output.path() if output.is_local else state
    if output.is_local:
        check_folder(dst)
    try:
        os.makedirs(state, exist_ok=True)
        fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise output_error(error, dst) from None
    owner = state / OWNER_FILE
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputLockedError(
                f"another shardgen build is writing here ({_describe_owner(owner)}); "
                "wait for it to end, or stop it, or choose another output folder",
                output.root,
            ) from None
        with contextlib.suppress(OSError):  # only informative: the lock itself is what counts
            atomic.write_json(owner, {"pid": os.getpid(), "command": _command()})
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                owner.unlink()
    finally:
        os.close(fd)


def _command() -> str:
    args = list(sys.argv)
    if args and Path(args[0]).name == "__main__.py":  # python -m shardgen
        args[0] = "shardgen"
    return shlex.join(args)


def _describe_owner(owner: Path) -> str:
    info = _read_json(Location.of(owner.parent), owner.name)
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return "pid unknown"
    command = info.get("command")
    return f"pid {info['pid']}: {command}" if isinstance(command, str) and command else f"pid {info['pid']}"


def check_folder(dst: Path) -> None:
    """DST must be a folder, or a path where one can be made."""
    if dst.is_symlink() and not dst.exists():
        raise UsageError(
            f"output is a symbolic link to {os.readlink(dst)}, which does not exist; "
            "create that folder or choose another output",
            dst,
        )
    if dst.exists() and not dst.is_dir():
        raise UsageError("output must be a folder, but a file exists there", dst)


def prepare_output(
    output: Location,
    state: Path,
    sources: list[SourceFile],
    options: BuildOptions,
    overwrite: bool,
    warn: Callable[[str], None],
) -> None:
    """Check DST, refuse a rerun with other inputs or options, clean up, and record this build's
    identity (in ``DST/.shardgen``); make the local state folder ``state``. Call it holding :func:`locked`."""
    records = output.child(STATE_DIR)
    identity = {"inputs": fingerprint(sources), "options": options.to_dict()}
    try:
        if output.is_file():
            raise UsageError("output must be a folder, but a file exists there", output.root)
        previous = _read_json(records, BUILD_FILE)
        finished = finished_manifest(output) if previous is None and output.is_local else None
        recovered: list[ShardRecord] = []
        if overwrite:
            kept = clean_output(output, state, before=lambda kept: _refuse_clashes(output, kept))
            _report_kept(output, kept, warn)
        elif previous is not None and comparable_identity(previous) != comparable_identity(identity):
            difference = describe_difference(previous, identity)
            if not _holds_output(output):
                # It stopped before its first shard (a bad input file, a stop during ingest): there
                # is no work to keep and nothing to mix, so a fixed input or option just goes on.
                warn(f"{output.root}: replacing an unfinished build with other {difference}: it had written no shard")
                clean_output(output, state)
            else:
                raise OptionsChangedError(
                    f"holds a build with other {difference}; "
                    "rerun with --overwrite to replace it, or choose another output folder",
                    output.root,
                )
        elif finished is not None:
            # A finished build whose .shardgen was deleted (safe, as documented): its manifest says what it was.
            recovered = _recognise_finished_build(output, finished, identity)
        elif previous is None and _holds_output(output):
            # (a state folder alone is a first build that stopped before recording its identity)
            raise UsageError(
                "output folder is not empty and holds no shardgen build; choose an empty or new folder", output.root
            )
        os.makedirs(state / "store", exist_ok=True)
        records.write_atomic(BUILD_FILE, (json.dumps(identity, indent=2) + "\n").encode())
        journal = Journal(state / JOURNAL_FILE)
        for record in recovered:
            journal.append(record)
        remove_leftovers(output, state)
    except OSError as error:  # local ones name their file; fsspec's do not
        raise output_error(error, error.filename or (state if output.is_local else output.root)) from None
    except Exception as error:  # botocore's failures are not OSErrors
        if not is_storage_error(error):
            raise
        raise storage_error(error, output.root, "write the output") from None


def _holds_output(output: Location) -> bool:
    """Whether DST holds anything but the state folder: a shard, a partial one, a file of the user's."""
    return any(name != STATE_DIR for name in output.list(files_only=False))


def _refuse_clashes(output: Location, kept: list[str]) -> None:
    """Refuse --overwrite, before it deletes anything, if a file it would keep has a name builds write."""
    clashes = [name for name in kept if _OUR_NAMES.fullmatch(name)]
    if clashes:
        raise UsageError(
            f"holds {clashes[0]}, named as shardgen names its outputs, but no record says shardgen wrote "
            "it; move it away or choose another output folder (nothing was deleted)",
            output.root,
        )


def _report_kept(output: Location, kept: list[str], warn: Callable[[str], None]) -> None:
    """Say which files --overwrite left."""
    if kept:
        names = ", ".join(kept[:5]) + (", ..." if len(kept) > 5 else "")
        warn(f"--overwrite kept {len(kept)} file(s) in {output.root} that no record says shardgen wrote: {names}")


def finished_manifest(output: Location) -> dict | None:
    """The manifest of a finished shardgen build in DST, or None (none, unreadable, or not ours)."""
    found = _read_json(output, manifest.MANIFEST)
    if not isinstance(found, dict) or "shardgen_version" not in found:
        return None
    splits, sources = found.get("splits"), found.get("sources")
    if not isinstance(splits, dict) or not isinstance(sources, list) or not isinstance(found.get("options"), dict):
        return None
    return found


def _recognise_finished_build(output: Location, finished: dict, identity: dict) -> list[ShardRecord]:
    """Refuse unless ``finished`` was built from the same inputs and options; return its shards.

    Without ``build.json``, inputs are known by name and by being no newer than the manifest (as
    make decides); the returned records are only candidates, checked by size and sha256 before reuse.
    """
    built_ns = output.path(manifest.MANIFEST).stat().st_mtime_ns
    skipped = finished.get("skipped_files")
    names = [*finished["sources"], *(item.get("source") for item in skipped or () if isinstance(item, dict))]
    then = {"inputs": sorted(({"file": name} for name in names), key=str), "options": finished["options"]}
    now_inputs = [
        {"file": item["file"], **({"modified": True} if item.get("mtime_ns", built_ns + 1) > built_ns else {})}
        for item in identity["inputs"]
    ]
    now = {"inputs": sorted(now_inputs, key=str), "options": identity["options"]}
    if comparable_identity(then) != comparable_identity(now):
        raise OptionsChangedError(
            f"holds a finished build with other {describe_difference(then, now)}; "
            "rerun with --overwrite to replace it, or choose another output folder",
            output.root,
        )
    return _manifest_shards(finished)


def _manifest_shards(finished: dict) -> list[ShardRecord]:
    """The shards a manifest lists."""
    records = []
    for entry in finished["splits"].values():
        try:
            for shard in entry["shards"]:
                records.append(ShardRecord(shard["file"], shard["count"], shard["bytes"], shard["sha256"]))
        except (KeyError, TypeError):
            continue  # an entry that does not say enough: its shards are rendered again
    return records


def record_outputs(output: Location, names: Iterable[str]) -> None:
    """Add ``names`` (files in DST) to what this build says it writes; call before writing them."""
    recorded = sorted(set(_recorded_outputs(output)) | set(names))
    output.child(STATE_DIR).write_atomic(OUTPUTS_FILE, (json.dumps(recorded, indent=2) + "\n").encode())


def _recorded_outputs(output: Location) -> list[str]:
    recorded = _read_json(output.child(STATE_DIR), OUTPUTS_FILE)
    return [name for name in recorded if isinstance(name, str)] if isinstance(recorded, list) else []


def owned_files(output: Location, state: Path) -> set[str]:
    """Every file in DST that this folder's shardgen records (outputs, journal, manifest) name."""
    journal = Journal(state / JOURNAL_FILE) if output.is_local else RecordJournal(output.child(STATE_DIR))
    names = set(_recorded_outputs(output)) | set(journal.load())
    finished = finished_manifest(output)
    if finished is not None:
        names.add(manifest.MANIFEST)
        names.update(f"{split}.wids.json" for split in finished["splits"])
        names.update(record.file for record in _manifest_shards(finished))
        files = finished.get("files")
        if isinstance(files, list):
            names.update(name for name in files if isinstance(name, str))
    # Records are data: a name that is not a plain file name in DST is never ours to delete.
    return {name for name in names if name not in ("", ".", "..", STATE_DIR) and Path(name).name == name}


def _is_leftover(name: str, owned: set[str]) -> bool:
    """A partial shard or temp file of a file shardgen writes: only an interrupted build leaves these."""
    if _CARD_TEMP.fullmatch(name):  # a README.md of the user's is never rewritten, so never staged
        return True
    base = partial_target(name) or atomic.temp_target(name)
    if base is None:
        return False
    return base in owned or bool(_OUR_NAMES.fullmatch(base))


def shard_folder(output: Location, state: Path) -> Path:
    """Where shards are sealed: in DST itself, or, for a URL, in the work folder before their upload."""
    return output.path() if output.is_local else state / SEALED_DIR


def remove_partials(folder: Path, owned: set[str]) -> None:
    """Delete the partial shards and temp files of shardgen's own names in ``folder``."""
    for path in folder.iterdir():
        if _is_leftover(path.name, owned) and path.is_file():
            path.unlink(missing_ok=True)


def remove_leftovers(output: Location, state: Path) -> None:
    """Delete what an interrupted build may leave: partial shards, temp files and fragment files,
    and shards sealed for upload but never uploaded.

    Only names shardgen itself writes are touched; a resumed build rewrites what they stood for.
    """
    remove_unfinished(state)
    shards = shard_folder(output, state)
    if not output.is_local:
        shutil.rmtree(shards, ignore_errors=True)
        os.makedirs(shards)
    remove_partials(shards, set(_recorded_outputs(output)) if output.is_local else set())
    for folder in (state, state / "store", *(state / "store" / split for split in SPLITS)):
        for path in folder.glob(".*.tmp"):
            path.unlink(missing_ok=True)


def remove_unfinished(state: Path) -> None:
    """Delete the work a run had not finished: chunk fragments, and byte ranges not yet joined
    (their file is read again). Call it when no task of the run can still be writing them."""
    shutil.rmtree(state / PARTS_DIR, ignore_errors=True)
    shutil.rmtree(state / "store" / RANGES_DIR, ignore_errors=True)


def _read_json(folder: Location, name: str) -> Any:
    try:
        return json.loads(folder.read_bytes(name))
    except (OSError, ValueError):
        return None


def clean_output(output: Location, state: Path, before: Callable[[list[str]], None] | None = None) -> list[str]:
    """Remove what this folder's shardgen records say a build wrote in DST (shards, indexes, manifest,
    their partial and temp files, the state folder) and its work folder; return what is left.

    ``before(kept)`` is called with what will be left before anything is removed: it may refuse
    (raise), and then nothing is.
    """
    owned = owned_files(output, state)
    files = set(output.list())
    ours, kept = [], []
    for name in output.list(files_only=False):
        if name == STATE_DIR:
            continue
        recorded = name in owned or _is_leftover(name, owned)
        if name in files and (recorded or (name == card.CARD and card.written_by_shardgen(output))):
            ours.append(name)
        else:
            kept.append(name)
    if before is not None:
        before(kept)
    for name in ours:
        output.delete(name)
    if not output.is_local:
        output.remove_tree(STATE_DIR)
    if state.is_dir():
        _empty_state(state)
    return kept


def _empty_state(state: Path) -> None:
    """Remove the state folder's contents but the running build's owner note (see :func:`locked`)."""
    for path in state.iterdir():
        if path.name == OWNER_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
