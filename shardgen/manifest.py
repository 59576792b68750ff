"""The index stage: ``manifest.json``, one ``{split}.wids.json`` per split and the dataset card
(``README.md``), each written atomically."""

from __future__ import annotations

import json

from . import __version__, card
from .location import Location
from .write import ShardRecord

MANIFEST = "manifest.json"


def wids_index(split: str, shards: list[ShardRecord]) -> dict:
    """A ``wids-shard-index-v1`` index; URLs are relative to the index file's folder.

    Without ``md5sum``: it is optional, and wids never checks it (only ``wids_index create`` writes it).
    """
    return {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": split,
        "shardlist": [{"url": s.file, "nsamples": s.count, "filesize": s.bytes} for s in shards],
    }


def build_manifest(
    *,
    classes: list[str],
    sources: list[str],
    options: dict,
    splits: dict[str, list[ShardRecord]],
    blank: dict[str, int],
    skipped: list[dict],
    skipped_files: list[dict],
    class_counts: dict[str, list[int]] | None = None,
) -> dict:
    """Everything a consumer needs to know about a build, and how to rebuild it.

    ``class_counts`` gives, per split, the number of samples of each class (in ``classes`` order),
    so ``shardgen info`` and ``shardgen verify`` need not read every shard to know them.
    """
    return {
        "shardgen_version": __version__,
        "classes": classes,
        "sources": sources,
        "options": options,
        "splits": {
            split: {
                "count": sum(s.count for s in shards),
                "blank": blank.get(split, 0),
                **({"class_counts": list(class_counts[split])} if class_counts and split in class_counts else {}),
                "shards": [{"file": s.file, "count": s.count, "bytes": s.bytes, "sha256": s.sha256} for s in shards],
            }
            for split, shards in splits.items()
        },
        "skipped": skipped,
        "skipped_files": skipped_files,
    }


def write_index(dst: Location, manifest: dict, splits: dict[str, list[ShardRecord]]) -> None:
    """Write the wids indexes and the card first and the manifest last: a manifest means the build is done.

    Each is written atomically: a temp file and a rename locally, one PUT on object storage.
    """
    for split, shards in splits.items():
        dst.write_atomic(f"{split}.wids.json", _json_bytes(wids_index(split, shards)))
    if card.replaceable(dst):  # a README.md of the user's stays as it is
        dst.write_atomic(card.CARD, card.dataset_card(manifest).encode())
    dst.write_atomic(MANIFEST, _json_bytes(manifest))


def _json_bytes(obj: dict) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()
