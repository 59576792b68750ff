"""The command line: parse options, call one library function, report. Nothing else lives here.

Heavy modules (numpy, OpenCV, webdataset) are imported inside the commands so ``--help`` is quick.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .errors import ShardgenError

app = typer.Typer(
    help=(
        "Turn vector sketch datasets (sketch-rnn .npz stroke files) into rendered images packed "
        "as WebDataset tar shards.\n\n"
        "Example (the README has a five-minute tour):\n\n"
        "  shardgen sample ./npz                     # synthetic sketch-rnn files\n"
        "  shardgen build ./npz ./shards --dry-run   # the plan; nothing written\n"
        "  shardgen build ./npz ./shards --procs 8   # render the shards"
    ),
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: typer's rich help formatter alone costs ~0.2 s of imports on every --help.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def reports_errors(command):
    """Turn every ``ShardgenError`` into one line on stderr and its exit code: the one place."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ShardgenError as error:
            typer.echo(f"shardgen: error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM (pipeline.Interrupted), or Ctrl-C elsewhere
            message = getattr(error, "message", "interrupted")
            typer.echo(f"shardgen: {message}", err=True)
            raise typer.Exit(getattr(error, "exit_code", 130)) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shardgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Turn sketch-rnn .npz stroke files into WebDataset tar shards."""


@app.command()
@reports_errors
def sample(
    dst: Path = typer.Argument(..., help="Folder to write CATEGORY.npz files into (created)."),
    categories: int = typer.Option(6, "--categories", "-c", help="Number of categories (shapes)."),
    per_split: int = typer.Option(200, "--per-split", "-n", help="Sketches in each of train, valid and test."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed writes the same files."),
    file_format: str = typer.Option(
        "npz",
        "--format",
        help="npz (sketch-rnn), ndjson (QuickDraw simplified), ndjson-raw (with times), bin (Google's binary) "
        "or csv (Kaggle); the QuickDraw formats hold every split in one file, fitted into 0-255.",
    ),
    fit: bool = typer.Option(
        False,
        "--fit",
        help="npz only: fit the drawings into 0-255 like the QuickDraw formats (same points).",
        show_default="off",
    ),
) -> None:
    """Write synthetic sketches in the exact sketch-rnn .npz format or a QuickDraw one (for demos and tests)."""
    from .errors import UsageError
    from .sample import write_samples

    if dst.exists() and not dst.is_dir():
        raise UsageError("output must be a folder, but a file exists there", dst)
    try:
        paths = write_samples(dst, categories=categories, per_split=per_split, seed=seed, format=file_format, fit=fit)
    except ValueError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write: {error.strerror or error}", error.filename or dst) from None
    if file_format == "npz":
        typer.echo(f"wrote {len(paths)} categories x 3 splits x {per_split} sketches to {dst}")
    else:
        typer.echo(f"wrote {len(paths)} categories x {3 * per_split} drawings ({file_format}) to {dst}")


@app.command()
@reports_errors
def build(
    src: str = typer.Argument(
        ...,
        help="Folder of sketch files, one category each: sketch-rnn .npz, QuickDraw .ndjson(.gz), .bin or .csv; "
        "or an fsspec URL (s3://bucket/npz).",
    ),
    dst: str = typer.Argument(
        ..., help="Output folder for shards, manifest.json and wids indexes, or an fsspec URL (s3://bucket/shards)."
    ),
    procs: Optional[int] = typer.Option(
        None,
        "--procs",
        "-p",
        help="Worker processes (with --scheduler: tasks in flight).",
        show_default="all cores (with --scheduler: the cluster's threads)",
    ),
    scheduler: Optional[str] = typer.Option(
        None,
        "--scheduler",
        metavar="ADDRESS",
        help="Render on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786) instead of local "
        "processes; needs shardgen[dask].",
        show_default="local processes",
    ),
    storage_option: list[str] = typer.Option(
        [],
        "--storage-option",
        metavar="KEY=VALUE",
        help="KEY=VALUE passed to fsspec for URLs (repeatable; JSON values such as true or 3 are parsed), "
        "e.g. endpoint_url=http://127.0.0.1:9000.",
        show_default="none",
    ),
    work_dir: Optional[Path] = typer.Option(
        None,
        "--work-dir",
        help="With DST a URL: local folder for the packed store, plan and chunk fragments (a shared "
        "filesystem with --scheduler).",
        show_default="a folder under the system temp dir, named after DST",
    ),
    size: int = typer.Option(256, "--size", help="Image width and height in pixels."),
    line_width: Optional[float] = typer.Option(
        None, "--line-width", help="Stroke width in pixels (rounded to whole pixels).", show_default="2.5% of size"
    ),
    padding: float = typer.Option(0.05, "--padding", help="Margin around the drawing, as a fraction of the size."),
    antialias: bool = typer.Option(True, "--antialias/--no-antialias", help="Smooth or hard-edged lines."),
    invert: bool = typer.Option(
        False, "--invert", help="White ink on black instead of black on white.", show_default="off"
    ),
    channels: int = typer.Option(1, "--channels", help="1 (grayscale) or 3 (colour)."),
    color: str = typer.Option(
        "black",
        "--color",
        help="black; random: each stroke its own colour (seeded by --seed and the sample key); "
        "order: stroke order as intensity, first strokes darkest (a colour ramp with --channels 3); "
        "time: each point by its time in the drawing (raw QuickDraw ndjson/CSV only).",
    ),
    image_format: str = typer.Option("png", "--format", help="png, jpg, webp or npy (raw uint8 array)."),
    quality: int = typer.Option(90, "--quality", help="jpg/webp quality, 1-100 (both are lossy)."),
    png_compression: int = typer.Option(
        1,
        "--png-compression",
        help="png compression 0-9, mapped onto ISA-L's levels: 0 -> 0 (fastest, larger files), 1-9 -> 1 "
        "(ISA-L's 2 and 3 give no smaller sketches); does not change pixels.",
    ),
    png_encoder: str = typer.Option(
        "isal",
        "--png-encoder",
        hidden=True,
        help="For scripts/bench only: opencv is the png encoder shardgen used before ISA-L.",
    ),
    with_strokes: bool = typer.Option(
        False, "--with-strokes", help="Also store each sketch's stroke-3 array as KEY.strokes.npy.", show_default="off"
    ),
    shard_size: int = typer.Option(
        10_000, "--shard-size", help="Most samples per shard; shards are cut to near-equal sizes."
    ),
    splits: Optional[str] = typer.Option(
        None, "--splits", help="Comma-separated splits to build, e.g. train,valid.", show_default="every split present"
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", help="At most N sketches per category and split (quick runs).", show_default="no limit"
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the cross-category shuffle (and random colours)."),
    split_ratio: Optional[str] = typer.Option(
        None,
        "--split-ratio",
        help="QuickDraw files: TRAIN,VALID,TEST fractions, e.g. 0.9,0.05,0.05, assigned by a seeded hash of key_id.",
        show_default="all in train",
    ),
    recognized_only: bool = typer.Option(
        False, "--recognized-only", help="QuickDraw files: keep only drawings the game recognized.", show_default="off"
    ),
    countries: Optional[str] = typer.Option(
        None, "--countries", help="QuickDraw files: keep only these country codes, e.g. US,GB.", show_default="all"
    ),
    shuffle: bool = typer.Option(
        True, "--shuffle/--no-shuffle", help="Mix categories across shards, or keep source order."
    ),
    on_error: str = typer.Option(
        "skip-sketches",
        "--on-error",
        help="skip-sketches: list invalid sketches and go on, stop on an unreadable file; "
        "skip: skip both; fail: stop at the first of either.",
    ),
    dali_index: bool = typer.Option(
        False, "--dali-index", help="Also write SHARD.idx for NVIDIA DALI's webdataset reader.", show_default="off"
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace a build in DST made with other inputs or options (deletes only files shardgen wrote).",
        show_default="off",
    ),
    chunk_size: Optional[int] = typer.Option(
        None,
        "--chunk-size",
        help="Samples per worker task (does not change the output).",
        show_default="256-4096, about 8 tasks a worker",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Read the inputs and print the plan (counts, shards, size); render nothing.",
        show_default="off",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary (or plan) as JSON on stdout, for scripts.", show_default="off"
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Print only warnings and errors (no progress, no summary).", show_default="off"
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also log each shard as it is written, with timings.", show_default="off"
    ),
) -> None:
    """Render every sketch in SRC into WebDataset tar shards in DST (resumes an interrupted build)."""
    from .dryrun import plan_build
    from .errors import UsageError
    from .formats.select import ALL_TRAIN, DrawingOptions
    from .location import is_url, parse_storage_options
    from .pipeline import BuildOptions
    from .pipeline import build as run_build
    from .render import RenderOptions
    from .report import NORMAL, QUIET, VERBOSE, ProgressReporter, print_plan, print_summary

    options = BuildOptions(
        render=RenderOptions(
            size=size,
            line_width=line_width,
            padding=padding,
            antialias=antialias,
            invert=invert,
            channels=channels,
            color=color,
            format=image_format,
            quality=quality,
            png_compression=png_compression,
            png_encoder=png_encoder,
            strokes=with_strokes,
        ),
        shard_size=shard_size,
        splits=tuple(s.strip() for s in splits.split(",") if s.strip()) if splits else None,
        limit=limit,
        seed=seed,
        shuffle=shuffle,
        on_error=on_error,
        drawings=DrawingOptions(
            split_ratio=_fractions(split_ratio) if split_ratio else ALL_TRAIN,
            recognized_only=recognized_only,
            countries=tuple(c.strip().upper() for c in countries.split(",") if c.strip()) if countries else None,
        ),
        dali_index=dali_index,
    )
    if procs is not None and procs < 1:
        raise UsageError(f"--procs must be at least 1, got {procs}; leave it out to use every core")
    if quiet and verbose:
        raise UsageError("--quiet and --verbose contradict each other; pass one of them")
    verbosity = QUIET if quiet else VERBOSE if verbose else NORMAL
    if dry_run:
        if is_url(src):
            raise UsageError("--dry-run reads a local folder only; copy a few of the files down to plan with them", src)
        if Path(dst).exists() and not Path(dst).is_dir():
            raise UsageError("output must be a folder, but a file exists there", dst)
        with ProgressReporter(enabled=progress, verbosity=verbosity) as reporter:
            plan = plan_build(Path(src), options, reporter=reporter)
        if as_json or not quiet:
            print_plan(plan, as_json=as_json)
        return
    with ProgressReporter(enabled=progress, verbosity=verbosity) as reporter:
        result = run_build(
            src,
            dst,
            options,
            procs=procs,
            scheduler=scheduler,
            storage_options=parse_storage_options(storage_option),
            work_dir=work_dir,
            chunk_size=chunk_size,
            overwrite=overwrite,
            reporter=reporter,
        )
    if as_json or not quiet:
        print_summary(result, as_json=as_json)


def _fractions(text: str) -> tuple[float, ...]:
    from .errors import UsageError

    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--split-ratio takes three numbers TRAIN,VALID,TEST, got {text!r}") from None


@app.command()
@reports_errors
def preview(
    dst: Path = typer.Argument(..., help="A finished build's output folder (holds manifest.json)."),
    output: Path = typer.Option(..., "--output", "-o", help="Image file to write the contact sheet to (.png or .jpg)."),
    split: str = typer.Option("train", "--split", help="Split to show samples of."),
    count: int = typer.Option(64, "--count", "-n", help="Number of samples (about as many from each class)."),
    cell: int = typer.Option(64, "--cell", help="Width and height of each image in the grid, in pixels."),
) -> None:
    """Write a contact sheet of rendered samples, each labelled with its category, to look at."""
    from .preview import preview as run_preview

    shown = run_preview(dst, output, split=split, count=count, cell=cell)
    typer.echo(f"wrote {shown} {split} samples to {output}")


@app.command()
@reports_errors
def verify(
    dst: Path = typer.Argument(..., help="A build's output folder (holding manifest.json)."),
    procs: int = typer.Option(os.cpu_count() or 1, "--procs", "-p", help="Worker processes.", show_default="all cores"),
) -> None:
    """Read every shard in DST and check it against the manifest; exit 0 only if all is well."""
    from .errors import UsageError, VerifyError
    from .verify import verify as run_verify

    if procs < 1:
        raise UsageError(f"procs must be at least 1, got {procs}")
    result = run_verify(dst, procs=procs)
    for problem in result.problems:
        typer.echo(problem)
    if not result.ok:
        raise VerifyError(result.verdict(), dst)
    typer.echo(f"{dst}: {result.verdict()}")


@app.command()
@reports_errors
def info(
    dst: Path = typer.Argument(..., help="A build's output folder (holding manifest.json)."),
) -> None:
    """Show what DST holds: images per class and split, shards and sizes, render options, skips."""
    from .info import print_info

    print_info(dst)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="shardgen")
