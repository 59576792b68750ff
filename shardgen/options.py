"""Every build option, defined once: its default, its check, and how the command line spells it.

Each field carries its ``build`` command-line option in its metadata (see :class:`Flag`); the CLI
derives its options, defaults and help from these dataclasses, so a default is written only here.
Checks raise :class:`UsageError` naming the option as it is typed on the command line.

This module is read for every ``shardgen build --help``: it imports nothing heavy (no numpy, OpenCV
or zlib-ng); the few methods that need the render code import it when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, asdict, dataclass, field, fields, is_dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from .errors import UsageError

SPLITS = ("train", "valid", "test")
ALL_TRAIN = (1.0, 0.0, 0.0)
ON_ERROR = ("skip-sketches", "skip", "fail")
FORMATS = ("png", "jpg", "webp", "npy")
COLORS = ("black", "random", "order", "time")
# "zlib-ng" is shardgen's own PNG writer (``png.py``). "opencv" is the encoder before it, kept only
# so that scripts/bench can measure both in one run (``--png-encoder``, hidden from ``--help``).
PNG_ENCODERS = ("zlib-ng", "opencv")

T = TypeVar("T")


@dataclass(frozen=True)
class Flag:
    """How one option field is spelled on the ``build`` command line."""

    names: tuple[str, ...]  # "--size", or "--antialias/--no-antialias", and any short name
    help: str
    # Text for a default that stands for something (None: "all cores"); a switch that is off
    # unless given shows "off" (see cli.switch).
    show_default: bool | str = True
    # For a field the command line gives as text ("train,valid"): text -> value. Left out or
    # empty, the field keeps its default.
    parse: Callable[[Any], Any] | None = None
    repeat: bool = False  # given once per value (--storage-option K=V --storage-option ...)
    metavar: str | None = None
    hidden: bool = False


def option(default: T, *names: str, **flag: Any) -> T:
    """A dataclass field with ``default`` whose command-line option is ``Flag(names, **flag)``."""
    return field(default=default, metadata={"cli": Flag(names, **flag)})


def cli_fields(cls: type) -> Iterator[tuple[str, Any, Any, Flag]]:
    """``(name, type, default, flag)`` of every field of ``cls`` that has a command-line option,
    the fields of nested options (``BuildOptions.render``) in their place."""
    hints = get_type_hints(cls)
    for f in fields(cls):
        if (nested := _nested(f)) is not None:
            yield from cli_fields(nested)
        elif "cli" in f.metadata:
            yield f.name, hints[f.name], f.default, f.metadata["cli"]


def from_values(cls: type[T], values: Mapping[str, Any]) -> T:
    """``cls`` made from the command line's ``values`` (by field name), parsing those given as text."""
    given: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]  # cls is an options dataclass
        flag = f.metadata.get("cli")
        if (nested := _nested(f)) is not None:
            given[f.name] = from_values(nested, values)
        elif flag is not None and flag.parse is None:
            given[f.name] = values[f.name]
        elif flag is not None and values[f.name]:
            given[f.name] = flag.parse(values[f.name])
    return cls(**given)


def _nested(f: Field) -> type | None:
    """The options class of a field that holds options (``BuildOptions.render``), else None."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and is_dataclass(factory) else None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _country_codes(text: str) -> tuple[str, ...]:
    return tuple(code.upper() for code in _names(text))


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--split-ratio takes three numbers TRAIN,VALID,TEST, got {text!r}") from None


def _storage_options(items: list[str]) -> dict[str, Any]:
    from .location import parse_storage_options  # here: location loads numpy, not needed to parse options

    return parse_storage_options(items)


def _at_least_one(flag: str, value: int | None, hint: str = "") -> None:
    if value is not None and value < 1:
        raise UsageError(f"{flag} must be at least 1, got {value}{hint}")


def check_procs(procs: int | None) -> None:
    """The check of every command's ``--procs``: None (every core) or at least 1."""
    _at_least_one("--procs", procs, "; leave it out to use every core")


def _one_of(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class RenderOptions:
    """How a sketch becomes a sample; recorded in the manifest so a dataset says how it was made."""

    size: int = option(256, "--size", help="Image width and height in pixels (8-4096).")
    line_width: float | None = option(  # pixels; None means 2.5% of size, at least 1
        None,
        "--line-width",
        help="Stroke width in pixels (OpenCV draws widths in 2 px steps: the nearest).",
        show_default="2.5% of size",
    )
    padding: float = option(  # margin on each side, as a fraction of size
        0.05, "--padding", help="Margin around the drawing, as a fraction of the size."
    )
    antialias: bool = option(True, "--antialias/--no-antialias", help="Smooth or hard-edged lines.")
    invert: bool = option(False, "--invert", help="White ink on black instead of black on white.")
    channels: int = option(1, "--channels", help="1 (grayscale) or 3 (colour).")
    color: str = option(
        "black",
        "--color",
        help="black; random: each stroke its own colour (seeded by --seed and the sample key); "
        "order: stroke order as intensity, first strokes darkest (a colour ramp with --channels 3); "
        "time: each point by its time in the drawing (raw QuickDraw ndjson/CSV only).",
    )
    format: str = option("png", "--format", help="png, jpg, webp or npy (raw uint8 array).")
    quality: int = option(90, "--quality", help="jpg/webp quality, 1-100 (both are lossy).")
    png_compression: int = option(  # zlib's 0-9 scale; 1 is the sweet spot for drawings
        1,
        "--png-compression",
        help="png compression 0-9 (zlib's levels: 0 stores, 1 is fastest, 2 makes antialiased sketches ~16% "
        "smaller at twice the encode time); does not change pixels.",
    )
    png_encoder: str = option(
        "zlib-ng",
        "--png-encoder",
        hidden=True,
        help="For scripts/bench only: opencv is the png encoder shardgen used before its own.",
    )
    strokes: bool = option(  # the sketch's stroke-3 array beside the image (KEY.strokes.npy)
        False, "--with-strokes", help="Also store each sketch's stroke-3 array as KEY.strokes.npy."
    )

    @property
    def width(self) -> float:
        """The stroke width asked for, in pixels."""
        return self.line_width if self.line_width is not None else max(1.0, 0.025 * self.size)

    @cached_property
    def thickness(self) -> int:
        """The OpenCV ``thickness`` whose drawn width is nearest to ``width``."""
        from .render import opencv_thickness  # here: keeps OpenCV out of parsing options

        return opencv_thickness(self.width, self.antialias)

    @property
    def extension(self) -> str:
        return self.format

    def to_dict(self) -> dict:
        from .render import png_encoder_version  # here: keeps OpenCV and zlib-ng out of parsing options

        # The PNG encoder's version is part of a build's identity: a resumed build never mixes two.
        recorded = {**asdict(self), "line_width": self.width, "png_encoder": png_encoder_version(self.png_encoder)}
        if not self.strokes:  # recorded only when set: other builds keep the manifest and identity they had
            del recorded["strokes"]
        return recorded

    def check(self) -> None:
        """Raise ``UsageError`` naming the first option that is out of range."""
        if not 8 <= self.size <= 4096:
            raise UsageError(f"--size must be between 8 and 4096 pixels, got {self.size}")
        if not 0 <= self.padding < 0.5:
            raise UsageError(f"--padding must be in [0, 0.5), got {self.padding}")
        if self.line_width is not None and not 0 < self.line_width <= self.size:
            raise UsageError(f"--line-width must be in (0, --size], got {self.line_width}")
        if self.channels not in (1, 3):
            raise UsageError(f"--channels must be 1 or 3, got {self.channels}")
        _one_of("--color", self.color, COLORS)
        _one_of("--format", self.format, FORMATS)
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100, got {self.quality}")
        if not 0 <= self.png_compression <= 9:
            raise UsageError(f"--png-compression must be between 0 and 9, got {self.png_compression}")
        _one_of("--png-encoder", self.png_encoder, PNG_ENCODERS)


@dataclass(frozen=True)
class DrawingOptions:
    """How drawings from QuickDraw files are split and filtered."""

    split_ratio: tuple[float, ...] = option(  # train, valid, test (check() wants three); sums to 1
        ALL_TRAIN,
        "--split-ratio",
        help="QuickDraw files: TRAIN,VALID,TEST fractions, e.g. 0.9,0.05,0.05, assigned by a seeded hash of key_id.",
        show_default="all in train",
        parse=_fractions,
    )
    recognized_only: bool = option(
        False, "--recognized-only", help="QuickDraw files: keep only drawings the game recognized."
    )
    countries: tuple[str, ...] | None = option(  # keep only these country codes
        None,
        "--countries",
        help="QuickDraw files: keep only these country codes, e.g. US,GB.",
        show_default="all",
        parse=_country_codes,
    )

    def check(self) -> None:
        """Raise ``UsageError`` naming the first option that is out of range."""
        ratio = self.split_ratio
        if len(ratio) != 3 or any(not 0 <= r <= 1 for r in ratio) or abs(sum(ratio) - 1) > 1e-6:
            shown = ",".join(map(str, ratio))
            raise UsageError(f"--split-ratio must be three fractions TRAIN,VALID,TEST summing to 1, got {shown}")
        if self.countries is not None and not self.countries:
            raise UsageError("--countries must name at least one country code")

    @property
    def filters(self) -> bool:
        return self.recognized_only or self.countries is not None

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits that can receive drawings."""
        return tuple(split for split, share in zip(SPLITS, self.split_ratio) if share > 0)

    def to_dict(self) -> dict:
        """Only what differs from the defaults, so builds that use none keep their identity."""
        out: dict = {}
        if self.split_ratio != ALL_TRAIN:
            out["split_ratio"] = list(self.split_ratio)
        if self.recognized_only:
            out["recognized_only"] = True
        if self.countries is not None:
            out["countries"] = list(self.countries)
        return out


@dataclass(frozen=True)
class BuildOptions:
    """Everything that decides the output bytes (how the build runs is :class:`RunOptions`)."""

    render: RenderOptions = field(default_factory=RenderOptions)
    shard_size: int = option(10_000, "--shard-size", help="Most samples per shard; shards are cut to near-equal sizes.")
    splits: tuple[str, ...] | None = option(  # None: every split present in the inputs
        None,
        "--splits",
        help="Comma-separated splits to build, e.g. train,valid.",
        show_default="every split present",
        parse=_names,
    )
    limit: int | None = option(  # at most this many sketches per category and split
        None, "--limit", help="At most N sketches per category and split (quick runs).", show_default="no limit"
    )
    seed: int = option(0, "--seed", help="Seed of the cross-category shuffle (and random colours).")
    drawings: DrawingOptions = field(default_factory=DrawingOptions)  # QuickDraw inputs: splits, filters
    shuffle: bool = option(True, "--shuffle/--no-shuffle", help="Mix categories across shards, or keep source order.")
    on_error: str = option(
        "skip-sketches",
        "--on-error",
        help="skip-sketches: list invalid sketches and go on, stop on an unreadable file; "
        "skip: skip both; fail: stop at the first of either.",
    )
    dali_index: bool = option(  # also write {shard}.idx, the index NVIDIA DALI's webdataset reader takes
        False, "--dali-index", help="Also write SHARD.idx for NVIDIA DALI's webdataset reader."
    )

    def check(self) -> None:
        """Raise ``UsageError`` naming the first option that is out of range."""
        self.render.check()
        self.drawings.check()
        _at_least_one("--shard-size", self.shard_size)
        _at_least_one("--limit", self.limit)
        if self.seed < 0:
            raise UsageError(f"--seed must be zero or positive, got {self.seed}")
        _one_of("--on-error", self.on_error, ON_ERROR)
        for split in self.splits or ():
            if split not in SPLITS:
                raise UsageError(f"--splits: unknown split {split!r}; choose from {', '.join(SPLITS)}")

    def to_dict(self) -> dict:
        return {
            "render": self.render.to_dict(),
            "shard_size": self.shard_size,
            "splits": list(self.splits) if self.splits else None,
            "limit": self.limit,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "on_error": self.on_error,
            **({"drawings": self.drawings.to_dict()} if self.drawings.to_dict() else {}),
            # recorded only when set: other builds keep the manifest and identity they had
            **({"dali_index": True} if self.dali_index else {}),
        }


@dataclass(frozen=True)
class RunOptions:
    """How a build runs, the keyword arguments of ``shardgen.build``: none of it changes the output."""

    procs: int | None = option(  # None: every core
        None,
        "--procs",
        "-p",
        help="Worker processes (with --scheduler: tasks in flight).",
        show_default="all cores (with --scheduler: the cluster's threads)",
    )
    scheduler: str | None = option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help="Render on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786) instead of local "
        "processes; needs shardgen[dask].",
        show_default="local processes",
    )
    storage_options: dict[str, Any] | None = option(
        None,
        "--storage-option",
        metavar="KEY=VALUE",
        help="KEY=VALUE passed to fsspec for URLs (repeatable; JSON values such as true or 3 are parsed), "
        "e.g. endpoint_url=http://127.0.0.1:9000.",
        show_default="none",
        parse=_storage_options,
        repeat=True,
    )
    work_dir: Path | None = option(
        None,
        "--work-dir",
        help="With DST a URL: local folder for the packed store, plan and chunk fragments (a shared "
        "filesystem with --scheduler).",
        show_default="a folder under the system temp dir, named after DST",
    )
    chunk_size: int | None = option(
        None,
        "--chunk-size",
        help="Samples per worker task; given, every shard is cut into such chunks (does not change the output).",
        show_default="a whole shard a task, the last two per worker in chunks of 256-4096",
    )
    overwrite: bool = option(
        False,
        "--overwrite",
        help="Replace a build in DST made with other inputs or options (deletes only files shardgen wrote).",
    )

    def check(self) -> None:
        """Raise ``UsageError`` naming the first option that is out of range."""
        check_procs(self.procs)
        _at_least_one("--chunk-size", self.chunk_size, "; leave it out for the default")
