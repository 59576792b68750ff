"""A build's identity: its inputs (cheap fingerprints) and options, and how two identities differ.

DST records the identity of the build it holds (``.shardgen/build.json``); a rerun compares its
own with it to tell a resume from a build that would mix two datasets (see ``output.prepare_output``).
"""

from __future__ import annotations

from .read import SPLITS, SourceFile
from .render import dot_radius, opencv_thickness


def fingerprint(sources: list[SourceFile]) -> list[dict]:
    """Identify the inputs cheaply (name, size, mtime), as make and rsync do."""
    return [{"file": source.name, **source.folder.identity(source.name)} for source in sources]


def comparable_identity(identity: dict) -> dict:
    """``identity`` with options that draw the same output spelled one way, for comparison only:
    splits in their canonical order, the line width as what OpenCV is given (the thickness, and
    the dot radius in fixed point, which the width sets on its own)."""
    options = identity.get("options") if isinstance(identity, dict) else None
    if not isinstance(options, dict):
        return identity
    options = dict(options)
    if isinstance(options.get("splits"), list):
        options["splits"] = sorted(options["splits"], key=lambda s: SPLITS.index(s) if s in SPLITS else len(SPLITS))
    render = options.get("render")
    if isinstance(render, dict) and isinstance(render.get("line_width"), (int, float)):
        width, antialias = render["line_width"], bool(render.get("antialias", True))
        drawn = (opencv_thickness(width, antialias), dot_radius(width))
        options["render"] = {**render, "line_width": drawn}
    return {**identity, "options": options}


def describe_difference(old: dict, new: dict) -> str:
    """Name what differs between two build identities, e.g. ``options (seed: 0 -> 1)``."""
    if old.get("inputs") != new.get("inputs"):
        old_files = {i["file"]: i for i in old.get("inputs", [])}
        new_files = {i["file"]: i for i in new["inputs"]}
        differ = sorted(f for f in old_files.keys() | new_files.keys() if old_files.get(f) != new_files.get(f))
        how = {
            name: "added" if name not in old_files else "removed" if name not in new_files else "changed"
            for name in differ
        }
        said = [f"{name} {how[name]}" for name in differ[:5]]
        return f"inputs ({', '.join(said)}{f', {len(differ) - 5} more' if len(differ) > 5 else ''})"
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
