"""Reading a finished build: its manifest, a split's shards, a shard's samples, their images.

Everything that reads a build back (``verify``, ``info``, ``preview``, the training loaders and the
tests) goes through here. Nothing here imports the build side, OpenCV or webdataset at import
time, so ``shardgen info`` starts without them.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import InputError, UsageError

MANIFEST = "manifest.json"  # the same name as manifest.MANIFEST, kept here to avoid importing the build side
NOT_FINISHED = f"no {MANIFEST}: not a finished shardgen build (run shardgen build, or let it finish)"
# The stroke-3 array beside the image in builds made with --with-strokes, as the store holds it.
STROKES = "strokes.npy"
# Members of a sample that are not the image; anything else is the image, whatever its format.
NON_IMAGE = ("cls", "json", STROKES)
# What each shard entry of a manifest must hold, and of which type.
SHARD_FIELDS = {"file": str, "count": int, "bytes": int, "sha256": str}


def is_url(dst: str | Path) -> bool:
    return isinstance(dst, str) and "://" in dst


def uses_fsspec(dst: str | Path) -> bool:
    """URLs webdataset does not open itself with a plain HTTP client (``s3://``, ``gs://``, ...) go through fsspec."""
    return is_url(dst) and str(dst).split("://", 1)[0] not in ("http", "https")


def load_manifest(dst: str | Path, storage_options: dict | None = None) -> dict:
    """The manifest of a finished build, from a folder or a URL (``s3://`` and the like through
    fsspec, ``https://`` through webdataset's gopen)."""
    if uses_fsspec(dst):
        from .location import Location

        try:
            return json.loads(Location.of(dst, storage_options).read_bytes(MANIFEST))
        except FileNotFoundError:
            raise InputError(NOT_FINISHED, dst) from None
    if is_url(dst):
        import webdataset as wds

        with wds.gopen(f"{str(dst).rstrip('/')}/{MANIFEST}") as stream:
            return check_manifest(json.load(stream), dst)
    if not Path(dst).exists():
        raise InputError("no such folder (give a build's output folder, the one holding manifest.json)", dst)
    if not Path(dst).is_dir():
        raise InputError("is a file, not a build's output folder (the folder holding manifest.json)", dst)
    path = Path(dst) / MANIFEST
    try:
        return check_manifest(json.loads(path.read_text()), dst)
    except FileNotFoundError:
        raise InputError(NOT_FINISHED, dst) from None
    except ValueError as error:
        raise InputError(f"{MANIFEST} is not valid JSON ({error})", dst) from None
    except OSError as error:
        raise InputError(f"cannot read {MANIFEST}: {error.strerror or error}", dst) from None


def check_manifest(manifest: Any, dst: str | Path) -> dict:
    """``manifest`` if it has the shape readers rely on; else an :class:`InputError` saying what is off."""

    def malformed(why: str) -> InputError:
        return InputError(f"{MANIFEST} is not a shardgen manifest: {why}; rebuild with shardgen build", dst)

    if not isinstance(manifest, dict):
        raise malformed(f"it holds a JSON {_json_type(manifest)}, not an object")
    if not isinstance(manifest.get("classes"), list) or not all(isinstance(c, str) for c in manifest["classes"]):
        raise malformed("'classes' is not a list of names")
    if not isinstance(manifest.get("splits"), dict):
        raise malformed("'splits' is not an object")
    options = manifest.get("options", {})
    if not isinstance(options, dict) or not isinstance(options.get("render", {}), dict):
        raise malformed("'options' or its 'render' is not an object")
    for split, info in manifest["splits"].items():
        if not (isinstance(info, dict) and isinstance(info.get("count"), int) and isinstance(info.get("shards"), list)):
            raise malformed(f"split {split!r} has no sample count or shard list")
        counts = info.get("class_counts", [0] * len(manifest["classes"]))
        if not isinstance(info.get("blank", 0), int) or not _ints(counts, len(manifest["classes"])):
            raise malformed(f"split {split!r} has a blank count or class counts that are not numbers")
        for shard in info["shards"]:
            if not isinstance(shard, dict) or not all(isinstance(shard.get(k), t) for k, t in SHARD_FIELDS.items()):
                raise malformed(f"a shard of split {split!r} lacks one of {', '.join(SHARD_FIELDS)}")
    for key in ("skipped", "skipped_files"):
        items = manifest.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) and "source" in i for i in items):
            raise malformed(f"{key!r} is not a list of skipped inputs")
    return manifest


def _ints(values: Any, length: int) -> bool:
    return isinstance(values, list) and len(values) == length and all(isinstance(v, int) for v in values)


def _json_type(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def shard_urls(dst: str | Path, split: str, manifest: dict | None = None) -> list[str]:
    """The split's shard paths (or URLs) in manifest order."""
    manifest = manifest if manifest is not None else load_manifest(dst)
    splits = manifest["splits"]
    if split not in splits:
        raise UsageError(f"no split {split!r} in this build; it has {', '.join(splits) or 'none'}", dst)
    base = str(dst).rstrip("/") if is_url(dst) else None
    return [f"{base}/{s['file']}" if base else str(Path(dst) / s["file"]) for s in splits[split]["shards"]]


def render_channels(manifest: dict) -> int | None:
    """The build's image channels (1 or 3), if its manifest says."""
    return manifest.get("options", {}).get("render", {}).get("channels")


def skip_location(skipped: dict) -> str:
    """Where a skipped sketch was: ``train[12]`` in a .npz, ``line 4`` or ``offset 96`` in a QuickDraw file."""
    if "split" in skipped:
        return f"{skipped['split']}[{skipped['index']}]"
    return next(f"{where} {skipped[where]}" for where in ("line", "offset") if where in skipped)


def group_by_key(archive: tarfile.TarFile) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """The samples of a tar archive as ``(key, [(extension, bytes), ...])``, in archive order.

    As in webdataset, a sample is a run of adjacent members whose names agree up to the first dot;
    a repeated extension is kept, so a checker can report it. Members that are not files read as
    empty. It works on archives opened for streaming (``mode="r|"``).
    """
    key: str | None = None
    members: list[tuple[str, bytes]] = []
    for member in archive:
        name_key, _, ext = member.name.partition(".")
        handle = archive.extractfile(member) if member.isfile() else None
        data = handle.read() if handle is not None else b""
        if name_key != key:
            if key is not None:
                yield key, members
            key, members = name_key, []
        members.append((ext, data))
    if key is not None:
        yield key, members


def shard_samples(path: str | Path | IO[bytes]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """The samples of one shard file (a path or an open binary file) as ``(key, {extension: bytes})``."""
    opened = {"fileobj": path} if hasattr(path, "read") else {"name": path}
    with tarfile.open(mode="r|", **opened) as archive:
        for key, members in group_by_key(archive):
            yield key, dict(members)


def image_member(sample: dict) -> str:
    """The extension of a sample's image member (the one not in ``NON_IMAGE``)."""
    names = [k for k in sample if not k.startswith("__") and k not in NON_IMAGE]
    if len(names) != 1:
        raise ValueError(f"sample {sample.get('__key__')!r} has image members {names}, expected exactly one")
    return names[0]


def decode_image(data: bytes, ext: str, channels: int | None = None) -> np.ndarray:
    """Encoded image bytes to a uint8 array: ``(H, W)`` for grayscale, ``(H, W, 3)`` RGB for colour.

    Grayscale stays 2-D on purpose: a 1-channel build is decoded to what was rendered, and a model
    that wants ``(1, H, W)`` or RGB can add the axis itself (``decode="torch"`` does). With
    ``channels=1`` (the build's render option) a format that cannot store grayscale (webp) is
    brought back to 2-D too, so the shape depends on the build, not on the file format.
    """
    if ext == "npy":
        # npy members are written by shardgen in RGB order already; pickles are never loaded.
        image = np.load(io.BytesIO(data), allow_pickle=False)
        if image.dtype != np.uint8:
            raise ValueError(f"npy image has dtype {image.dtype}, expected uint8")
        return image
    import cv2  # here, not at the top: reading a manifest must not load OpenCV

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot decode a .{ext} image of {len(data)} bytes")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if channels == 1 and image.ndim == 3:
        image = np.ascontiguousarray(image[:, :, 0])  # a grey image stored as colour has equal channels
    return image


def human_bytes(size: float) -> str:
    """``1234567`` -> ``1.2 MB`` (decimal units, as disks and object stores count)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"  # pragma: no cover
