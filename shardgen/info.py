"""``shardgen info``: what a build holds, from its manifest (classes x splits, shards, options, skips)."""

from __future__ import annotations

import sys
import tarfile
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import InputError, reason
from .reading import human_bytes, load_manifest, shard_samples, skip_location

# Skipped sketches listed one by one up to this many; the rest are summed up.
MAX_SKIPPED_SHOWN = 20


def class_counts(dst: Path, manifest: dict, split: str) -> list[int]:
    """Samples of each class in ``split``: from the manifest, or counted from the shards' ``.cls``
    members for builds whose manifest predates per-class counts."""
    info = manifest["splits"][split]
    if "class_counts" in info:
        return list(info["class_counts"])
    counts: Counter = Counter()
    for shard in info["shards"]:
        try:
            for _, sample in shard_samples(Path(dst) / shard["file"]):
                counts[int(sample["cls"])] += 1
        except (OSError, tarfile.TarError, ValueError, KeyError) as error:
            raise InputError(
                f"cannot count the classes of {shard['file']} ({reason(error)}); run shardgen verify", dst
            ) from None
    return [counts.get(i, 0) for i in range(len(manifest["classes"]))]


def print_info(dst: Path, console: Console | None = None) -> dict:
    """Print the build's tables on stdout; returns the manifest they came from."""
    console = console or Console(file=sys.stdout, width=max(100, Console(file=sys.stdout).width))
    manifest = load_manifest(dst)
    splits = list(manifest["splits"])
    classes = manifest["classes"]
    console.print(
        f"[bold]{escape(str(dst))}[/]: shardgen {manifest.get('shardgen_version', '?')} build", highlight=False
    )

    shards = Table(title="splits", title_justify="left", box=None, pad_edge=False)
    for column in ("split", "images", "shards", "bytes", "smallest", "largest", "blank"):
        shards.add_column(column, justify="left" if column == "split" else "right")
    for split, info in manifest["splits"].items():
        sizes = [s["bytes"] for s in info["shards"]] or [0]
        shards.add_row(
            split,
            f"{info['count']:,}",
            str(len(info["shards"])),
            human_bytes(sum(sizes)),
            human_bytes(min(sizes)),
            human_bytes(max(sizes)),
            f"{info.get('blank', 0):,}",
        )
    console.print(shards)

    counts = {split: class_counts(dst, manifest, split) for split in splits}
    table = Table(title="classes", title_justify="left", box=None, pad_edge=False)
    table.add_column("class", justify="right")
    table.add_column("category")
    for split in splits:
        table.add_column(split, justify="right")
    for index, name in enumerate(classes):
        table.add_row(str(index), escape(name), *(f"{counts[split][index]:,}" for split in splits))
    console.print(table)

    options = manifest.get("options", {})
    render = options.get("render", {})
    console.print(
        "render: " + ", ".join(f"{k}={v}" for k, v in render.items()), highlight=False, markup=False, soft_wrap=True
    )
    other = {k: v for k, v in options.items() if k != "render"}
    console.print(
        "build: " + ", ".join(f"{k}={v}" for k, v in other.items()), highlight=False, markup=False, soft_wrap=True
    )

    skipped, skipped_files = manifest.get("skipped", []), manifest.get("skipped_files", [])
    console.print(f"skipped: {len(skipped)} sketch(es), {len(skipped_files)} file(s)", highlight=False)
    for item in skipped_files:
        console.print(f"  {item['source']}: {item['reason']}", highlight=False, markup=False)
    for item in skipped[:MAX_SKIPPED_SHOWN]:
        console.print(f"  {item['source']}: {skip_location(item)}: {item['reason']}", highlight=False, markup=False)
    if len(skipped) > MAX_SKIPPED_SHOWN:
        console.print(f"  ... and {len(skipped) - MAX_SKIPPED_SHOWN} more (see manifest.json)", highlight=False)
    return manifest
