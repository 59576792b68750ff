"""Reading a build back: a ``webdataset`` pipeline over one split, for training jobs.

``open_dataset(DST, "train")`` reads ``manifest.json`` for the split's shard list and returns a
``webdataset.WebDataset`` yielding ``(image, label)``. It needs no PyTorch; with PyTorch it is an
``IterableDataset`` that ``torch.utils.data.DataLoader`` splits across workers by shard.

Images are decoded by member extension, whatever format the build used (``png``, ``jpg``,
``webp``, ``npy``, ...), so the loader follows the manifest instead of hard-coding one format.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UsageError

MANIFEST = "manifest.json"  # the same name as manifest.MANIFEST, kept here to avoid importing the build side
NOT_FINISHED = f"no {MANIFEST}: not a finished shardgen build (run shardgen build, or let it finish)"
DECODERS = ("numpy", "torch", "pil", "bytes")
# The stroke-3 array beside the image in builds made with --with-strokes, as the store holds it.
STROKES = "strokes.npy"
# Members of a sample that are not the image; anything else is the image, whatever its format.
NON_IMAGE = ("cls", "json", STROKES)


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
    import cv2

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


def image_member(sample: dict) -> str:
    """The extension of a sample's image member (the one not in ``NON_IMAGE``)."""
    names = [k for k in sample if not k.startswith("__") and k not in NON_IMAGE]
    if len(names) != 1:
        raise ValueError(f"sample {sample.get('__key__')!r} has image members {names}, expected exactly one")
    return names[0]


class SampleDecoder:
    """Turns a raw webdataset sample into ``(image, label)``, then ``strokes`` and ``metadata`` if asked.

    A class rather than a closure so that it pickles for DataLoader workers started with spawn.
    """

    def __init__(
        self, decode: str = "numpy", metadata: bool = False, channels: int | None = None, strokes: bool = False
    ) -> None:
        if decode not in DECODERS:
            raise UsageError(f"decode must be one of {', '.join(DECODERS)}, got {decode!r}")
        # Fail here, once, rather than inside every DataLoader worker.
        needs = {"torch": ("torch", "shardgen[torch]"), "pil": ("PIL", "pillow")}.get(decode)
        if needs and importlib.util.find_spec(needs[0]) is None:
            raise UsageError(f"decode={decode!r} needs {needs[0]}: pip install '{needs[1]}'")
        self.decode = decode
        self.metadata = metadata
        self.channels = channels
        self.strokes = strokes

    def image(self, data: bytes, ext: str) -> Any:
        if self.decode == "bytes":
            return data
        image = decode_image(data, ext, self.channels)
        if self.decode == "numpy":
            return image
        if self.decode == "pil":
            from PIL import Image

            return Image.fromarray(image)
        import torch

        # float32 in [0, 1], channels first, 3-D even for grayscale: what torchvision models expect.
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
        return tensor.float().div_(255.0)

    def __call__(self, sample: dict) -> tuple:
        if any(k.startswith(".") for k in sample):
            sample = _from_wids(sample)
        ext = image_member(sample)
        image = self.image(sample[ext], ext)
        items = [image, int(sample["cls"])]
        if self.strokes:
            data = sample[STROKES]
            items.append(data if self.decode == "bytes" else np.load(io.BytesIO(data), allow_pickle=False))
        if self.metadata:
            items.append(json.loads(sample["json"]))
        return tuple(items)


def _from_wids(sample: dict) -> dict:
    """A wids sample (``{".png": stream, ...}``) in webdataset's shape (``{"png": bytes, ...}``)."""
    return {(k[1:] if k.startswith(".") else k): (v.read() if hasattr(v, "read") else v) for k, v in sample.items()}


def _is_url(dst: str | Path) -> bool:
    return isinstance(dst, str) and "://" in dst


def _uses_fsspec(dst: str | Path) -> bool:
    """URLs webdataset does not open itself with a plain HTTP client (``s3://``, ``gs://``, ...) go through fsspec."""
    return _is_url(dst) and str(dst).split("://", 1)[0] not in ("http", "https")


class FsspecOpener:
    """A webdataset stage that opens each shard URL through fsspec, read as it streams.

    It takes the place of webdataset's own opener (which shells out to ``curl``/``gsutil`` or
    knows no ``s3://`` at all), so the build's storage options and the usual credentials
    environment (``AWS_ENDPOINT_URL``, ...) apply. A class, so it pickles for DataLoader workers.
    """

    def __init__(self, storage_options: dict | None = None) -> None:
        self.storage_options = dict(storage_options or {})

    def __call__(self, shards):
        import fsspec

        for shard in shards:
            url = shard["url"] if isinstance(shard, dict) else shard
            yield {"url": url, "stream": fsspec.open(url, "rb", **self.storage_options).open()}


def load_manifest(dst: str | Path, storage_options: dict | None = None) -> dict:
    """The manifest of a finished build, from a folder or a URL (``s3://`` and the like through
    fsspec, ``https://`` through webdataset's gopen)."""
    if _uses_fsspec(dst):
        from .location import Location

        try:
            return json.loads(Location.of(dst, storage_options).read_bytes(MANIFEST))
        except FileNotFoundError:
            raise InputError(NOT_FINISHED, dst) from None
    if _is_url(dst):
        import webdataset as wds

        with wds.gopen(f"{str(dst).rstrip('/')}/{MANIFEST}") as stream:
            return check_manifest(json.load(stream), dst)
    if Path(dst).exists() and not Path(dst).is_dir():
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


# What each shard entry of a manifest must hold, and of which type.
SHARD_FIELDS = {"file": str, "count": int, "bytes": int, "sha256": str}


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
    base = str(dst).rstrip("/") if _is_url(dst) else None
    return [f"{base}/{s['file']}" if base else str(Path(dst) / s["file"]) for s in splits[split]["shards"]]


def check_strokes(dst: str | Path, manifest: dict, strokes: bool) -> None:
    """Refuse ``strokes=True`` for a build whose samples hold no stroke arrays."""
    if strokes and not manifest.get("options", {}).get("render", {}).get("strokes"):
        raise UsageError("this build holds no stroke arrays; rebuild it with --with-strokes", dst)


def skip_location(skipped: dict) -> str:
    """Where a skipped sketch was: ``train[12]`` in a .npz, ``line 4`` or ``offset 96`` in a QuickDraw file."""
    if "split" in skipped:
        return f"{skipped['split']}[{skipped['index']}]"
    return next(f"{where} {skipped[where]}" for where in ("line", "offset") if where in skipped)


def render_channels(manifest: dict) -> int | None:
    """The build's image channels (1 or 3), if its manifest says."""
    return manifest.get("options", {}).get("render", {}).get("channels")


def open_dataset(
    dst: str | Path,
    split: str = "train",
    *,
    shuffle: int = 0,
    shard_shuffle: bool = False,
    resampled: bool = False,
    decode: str = "numpy",
    metadata: bool = False,
    strokes: bool = False,
    split_by_node: bool = True,
    split_by_worker: bool = True,
    empty_check: bool = True,
    seed: int | None = None,
    storage_options: dict | None = None,
):
    """A ``webdataset.WebDataset`` over one split of a build, yielding ``(image, label)``.

    - ``shuffle``: sample shuffle buffer size (0: none). Shards already mix every class.
    - ``shard_shuffle``: visit shards in a random order each pass.
    - ``resampled``: draw shards with replacement, an endless stream (cut epochs with
      ``.with_epoch(n)``); the usual choice for multi-node training.
    - ``decode``: ``numpy`` (uint8, ``(H, W)`` grayscale or ``(H, W, 3)`` RGB), ``torch``
      (float32 ``(C, H, W)`` in [0, 1]), ``pil`` (a PIL image), or ``bytes`` (encoded, undecoded).
    - ``strokes``: also yield the sketch's stroke-3 array (a build made with ``--with-strokes``).
    - ``metadata``: also yield the sample's JSON metadata (category, class, split, index, source),
      always as the last item.
    - ``split_by_node`` / ``split_by_worker``: deal shards out to distributed ranks and to
      DataLoader workers, so each sample is seen once per epoch (needs at least as many shards as
      ranks x workers; ``empty_check`` raises if a worker gets none).
    - ``seed``: seed of the shuffles (None: random).
    - ``storage_options``: passed to fsspec when ``dst`` is a URL such as ``s3://bucket/shards``.

    The result is a webdataset pipeline, so more stages can be chained (``.map_tuple``,
    ``.batched``, ``.with_epoch``...).
    """
    import webdataset as wds

    if shuffle < 0:
        raise UsageError(f"shuffle buffer must be zero or positive, got {shuffle}")
    manifest = load_manifest(dst, storage_options)
    urls = shard_urls(dst, split, manifest)
    check_strokes(dst, manifest, strokes)
    decoder = SampleDecoder(decode, metadata, render_channels(manifest), strokes)
    dataset = wds.WebDataset(
        urls,
        # A buffer as large as the shard list makes the shard order a full permutation.
        shardshuffle=len(urls) if shard_shuffle and not resampled else False,
        resampled=resampled,
        nodesplitter=wds.split_by_node if split_by_node else None,
        workersplitter=wds.split_by_worker if split_by_worker else None,
        empty_check=empty_check,
        seed=seed,
    )
    if _uses_fsspec(dst):
        opener = FsspecOpener(storage_options)
        dataset.pipeline = [
            opener if isinstance(stage, wds.cache.StreamingOpen) else stage for stage in dataset.pipeline
        ]
    if shuffle:
        dataset = dataset.shuffle(shuffle, seed=seed)
    return dataset.map(decoder)


def open_indexed(
    dst: str | Path, split: str = "train", *, decode: str = "numpy", metadata: bool = False, strokes: bool = False
):
    """A ``wids.ShardListDataset`` over one split: random access by index, ``len()``, any sampler.

    Items are ``(image, label)`` (with ``strokes`` and ``metadata``, more items), decoded as by
    :func:`open_dataset`. Local shards are read in place; remote ones go through wids' cache.
    Needs the ``wids`` package (``pip install 'shardgen[wids]'``).
    """
    try:
        import wids
    except ModuleNotFoundError:
        raise UsageError("random access needs the wids package: pip install 'shardgen[wids]'") from None

    manifest = load_manifest(dst)
    shard_urls(dst, split, manifest)  # a clear error for an unknown split
    check_strokes(dst, manifest, strokes)
    decoder = SampleDecoder(decode, metadata, render_channels(manifest), strokes)
    index = f"{str(dst).rstrip('/')}/{split}.wids.json" if _is_url(dst) else str(Path(dst) / f"{split}.wids.json")
    # localname=str maps a local shard path to itself, so wids opens it where it is instead of
    # copying it into its cache folder first.
    extra = {} if _is_url(dst) else {"localname": str}
    return wids.ShardListDataset(index, transformations=[decoder], **extra)
