"""The dataset card: ``DST/README.md``, so that ``datasets.load_dataset(DST)`` works as it is.

Hugging Face reads a dataset folder's ``README.md``: its YAML header says which files make each
split (``configs`` / ``data_files``; without it the ``{split}.wids.json`` indexes look like JSON data
files and loading fails) and what each member is (``dataset_info.features``: ``cls`` a
``ClassLabel`` with the class names, the image an ``Image``). The text below the header says how
the dataset was made. Everything comes from the manifest, so the card is a pure function of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .location import Location
from .read import DRAWING_FORMATS, input_suffix
from .reading import STROKES, skip_location

CARD = "README.md"
# The first line of every card shardgen writes (a YAML comment), so that a build replaces or
# removes a card of its own and never a README.md a user put there.
MARKER = "# Dataset card written by shardgen; every build rewrites it."
# Fields of every sample's ``.json`` member (see worker._meta_templates), as Hugging Face types.
METADATA_FEATURES = (
    ("category", "string"),
    ("class", "int64"),
    ("split", "string"),
    ("index", "int64"),
    ("source", "string"),
)
# What QuickDraw inputs add (formats.drawing.META_FIELDS); ``timestamp`` is a string in ndjson
# and CSV files and unix seconds in ``.bin`` ones, so its type depends on the inputs.
DRAWING_FEATURES = (("key_id", "string"), ("countrycode", "string"), ("recognized", "bool"), ("word", "string"))
TIMESTAMP_TYPES = {"ndjson": "string", "csv": "string", "bin": "int64"}
# Hugging Face decodes these extensions to images; an ``npy`` member is loaded as an array instead.
IMAGE_FORMATS = ("png", "jpg", "webp")
# Skipped inputs listed one by one up to this many; the manifest lists them all.
MAX_LISTED = 20
# Build options as ``shardgen build`` spells them: bools by their flag for True and for False
# (None: the CLI has no such flag, because it is the default).
BOOL_FLAGS = {
    "antialias": ("--antialias", "--no-antialias"),
    "invert": ("--invert", None),
    "shuffle": ("--shuffle", "--no-shuffle"),
    "strokes": ("--with-strokes", None),
    "dali_index": ("--dali-index", None),
    "recognized_only": ("--recognized-only", None),
}
# Recorded options that are no choice of the user's: the PNG encoder's version (for a build's identity).
NOT_FLAGS = ("png_encoder",)


def replaceable(folder: Location) -> bool:
    """Whether a build may write its card in ``folder``: no README.md there, or one shardgen wrote."""
    return not folder.exists(CARD) or written_by_shardgen(folder)


def written_by_shardgen(folder: Location) -> bool:
    """Whether ``folder``'s README.md is a card shardgen wrote."""
    start = f"---\n{MARKER}\n".encode()
    try:
        with folder.open_read(CARD) as f:
            return f.read(len(start)) == start
    except OSError:
        return False


def features(manifest: dict) -> list[dict]:
    """``dataset_info.features``: what Hugging Face's webdataset builder yields for each sample."""
    render = manifest["options"]["render"]
    image_format = render["format"]
    if image_format in IMAGE_FORMATS:
        image = {"name": image_format, "dtype": "image"}
    else:  # a raw uint8 array: (H, W) grayscale, (H, W, 3) colour
        shape = [render["size"], render["size"]] + ([3] if render["channels"] == 3 else [])
        image = {"name": image_format, "dtype": {f"array{len(shape)}_d": {"shape": shape, "dtype": "uint8"}}}
    names = {str(index): name for index, name in enumerate(manifest["classes"])}
    out = [
        image,
        {"name": "cls", "dtype": {"class_label": {"names": names}}},
        {"name": "json", "struct": [{"name": name, "dtype": dtype} for name, dtype in metadata(manifest["sources"])]},
    ]
    if render.get("strokes"):
        # The member keeps the store's dtype, which may differ between classes (int16 where exact,
        # else int32, float32 or float64); one feature type must hold them all exactly.
        out.append({"name": STROKES, "dtype": {"array2_d": {"shape": [None, 3], "dtype": "float64"}}})
    return out + [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"}]


def metadata(sources: list[str]) -> list[tuple[str, str]]:
    """The ``.json`` fields of a build from these source files, with their Hugging Face types.

    A sample from a file that lacks a field loads it as null. Hugging Face leaves out any field not
    listed, so a ``timestamp`` of two types (``.bin`` files mixed with others) is left out.
    """
    fields = list(METADATA_FEATURES)
    suffixes = {input_suffix(Path(source)) for source in sources}
    formats = {DRAWING_FORMATS[suffix] for suffix in suffixes if suffix in DRAWING_FORMATS}
    if formats:
        fields += DRAWING_FEATURES
        timestamps = {TIMESTAMP_TYPES[name] for name in formats}
        fields += [("timestamp", timestamps.pop())] if len(timestamps) == 1 else []
    return fields


def header(manifest: dict) -> dict:
    """The card's YAML header as data: splits from the shards only, never the wids indexes."""
    return {
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"{split}-*.tar"} for split in manifest["splits"]],
            }
        ],
        "dataset_info": {"features": features(manifest)},
        "tags": ["webdataset", "sketches", "shardgen"],
    }


def to_yaml(value, indent: int = 0) -> list[str]:
    """Block-style YAML lines for the dicts, lists and scalars of :func:`header`.

    Scalars are written as JSON, which YAML reads as the same value; so a category named ``yes``
    or ``1e3`` stays a string, and shardgen needs no YAML library.
    """
    pad = " " * indent
    lines: list[str] = []
    items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        lead = f"{pad}{_key(key)}:" if isinstance(value, dict) else f"{pad}-"
        if isinstance(item, (dict, list)) and item:
            if isinstance(value, list) and isinstance(item, dict):
                # "- key: value" on the dash's line, the rest of the mapping under it
                nested = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(lead)
                lines.extend(to_yaml(item, indent + 2))
        else:
            lines.append(f"{lead} {json.dumps(item, ensure_ascii=False)}")
    return lines


def _key(key: str) -> str:
    return key if key.isidentifier() else json.dumps(key)


def command(options: dict) -> str:
    """``shardgen build`` with every option that decided this build spelled out."""
    words = ["shardgen", "build", "SRC", "DST"]
    flat: dict = {}
    for name, value in options.items():  # render and drawings options are flags like the others
        flat.update(value if isinstance(value, dict) else {name: value})
    for name, value in flat.items():
        if name in NOT_FLAGS:
            continue
        if name in BOOL_FLAGS:
            flag = BOOL_FLAGS[name][0 if value else 1]
            words += [flag] if flag else []
        elif value is not None:
            value = ",".join(map(str, value)) if isinstance(value, list) else value
            words += [f"--{name.replace('_', '-')}", str(value)]
    return " ".join(words)


def body(manifest: dict) -> list[str]:
    """The card's Markdown text: what the dataset is, how it was made, what it holds."""
    splits, classes = manifest["splits"], manifest["classes"]
    render = manifest["options"]["render"]
    image = render["format"]
    members = f"`KEY.{image}`, `KEY.cls`, `KEY.json`" + (f", `KEY.{STROKES}`" if render.get("strokes") else "")
    lines = [
        f"# Rendered sketches: {len(classes)} classes, {sum(s['count'] for s in splits.values()):,} images",
        "",
        f"Vector sketches rendered to {render['size']} px `{image}` images and packed as WebDataset tar shards "
        f"by shardgen {manifest['shardgen_version']}. Each sample holds {members}; "
        "`cls` is the class index into the names below.",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'dataset = load_dataset("path/to/this/folder")  # or the Hub repository it was pushed to',
        "```",
        "",
        "## How it was made",
        "",
        f"    {command(manifest['options'])}",
        "",
        "with SRC holding " + ", ".join(f"`{source}`" for source in manifest["sources"]) + ".",
        "`manifest.json` records these options, every shard's size and sha256, and every skipped input.",
        "",
        "## Splits",
        "",
        "| split | images | shards | blank images |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {name} | {s['count']:,} | {len(s['shards'])} | {s.get('blank', 0):,} |" for name, s in splits.items()]
    lines += ["", "## Classes", "", "| cls | category | " + " | ".join(splits) + " |"]
    lines.append("| ---: | --- |" + " ---: |" * len(splits))
    counts = {name: s.get("class_counts") or [] for name, s in splits.items()}
    for index, category in enumerate(classes):
        cells = [f"{counts[name][index]:,}" if index < len(counts[name]) else "?" for name in splits]
        lines.append(f"| {index} | {category.replace('|', '&#124;')} | " + " | ".join(cells) + " |")
    return lines + ["", *skipped(manifest)]


def skipped(manifest: dict) -> list[str]:
    """The inputs left out of the build, so that a user of the dataset knows."""
    sketches, files = manifest.get("skipped", []), manifest.get("skipped_files", [])
    lines = ["## Skipped inputs", "", f"{len(sketches):,} invalid sketch(es) and {len(files)} unreadable file(s)."]
    listed = [f"- `{f['source']}`: {f['reason']}" for f in files]
    listed += [f"- `{s['source']}` {skip_location(s)}: {s['reason']}" for s in sketches]
    if listed:
        lines += ["", *listed[:MAX_LISTED]]
        if len(listed) > MAX_LISTED:
            lines.append(f"- ... and {len(listed) - MAX_LISTED} more (see `manifest.json`)")
    return lines


def dataset_card(manifest: dict) -> str:
    """The whole ``README.md``: YAML header, then the text."""
    return "\n".join(["---", MARKER, *to_yaml(header(manifest)), "---", "", *body(manifest), ""])
