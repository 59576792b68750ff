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

from .errors import UsageError
from .reading import (
    STROKES,
    decode_image,
    image_member,
    is_url,
    load_manifest,
    render_channels,
    shard_urls,
    uses_fsspec,
)

DECODERS = ("numpy", "torch", "pil", "bytes")


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


def check_strokes(dst: str | Path, manifest: dict, strokes: bool) -> None:
    """Refuse ``strokes=True`` for a build whose samples hold no stroke arrays."""
    if strokes and not manifest.get("options", {}).get("render", {}).get("strokes"):
        raise UsageError("this build holds no stroke arrays; rebuild it with --with-strokes", dst)


def _decoder(dst: str | Path, manifest: dict, decode: str, metadata: bool, strokes: bool) -> SampleDecoder:
    """The build's :class:`SampleDecoder`; refuses what the build cannot give (see :func:`check_strokes`)."""
    check_strokes(dst, manifest, strokes)
    return SampleDecoder(decode, metadata, render_channels(manifest), strokes)


def _open_with_fsspec(dataset, storage_options: dict | None) -> None:
    """Have ``dataset`` open its shards through fsspec (see :class:`FsspecOpener`)."""
    import webdataset as wds

    opener = FsspecOpener(storage_options)
    dataset.pipeline = [opener if isinstance(stage, wds.cache.StreamingOpen) else stage for stage in dataset.pipeline]


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
    decoder = _decoder(dst, manifest, decode, metadata, strokes)
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
    if uses_fsspec(dst):
        _open_with_fsspec(dataset, storage_options)
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
    except ModuleNotFoundError as error:
        # wids imports torch without declaring it: say which one is missing.
        needs = "the wids package" if error.name == "wids" else f"wids, which needs {error.name} (not installed)"
        raise UsageError(f"random access needs {needs}: pip install 'shardgen[wids]'") from None

    manifest = load_manifest(dst)
    shard_urls(dst, split, manifest)  # a clear error for an unknown split
    decoder = _decoder(dst, manifest, decode, metadata, strokes)
    index = f"{str(dst).rstrip('/')}/{split}.wids.json" if is_url(dst) else str(Path(dst) / f"{split}.wids.json")
    # localname=str maps a local shard path to itself, so wids opens it where it is instead of
    # copying it into its cache folder first.
    extra = {} if is_url(dst) else {"localname": str}
    return wids.ShardListDataset(index, transformations=[decoder], **extra)
