"""The command line: parse options, call one library function, report. Nothing else lives here.

Heavy modules (numpy, OpenCV, webdataset) are imported inside the commands so ``--help`` is quick.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .errors import ShardgenError

app = typer.Typer(
    help=(
        "Turn vector sketch datasets (sketch-rnn .npz stroke files) into rendered images packed "
        "as WebDataset tar shards.\n\n"
        "Example:\n\n"
        "    shardgen sample ./npz && shardgen build ./npz ./shards --procs 8"
    ),
    no_args_is_help=True,
    add_completion=False,
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
) -> None:
    """Write synthetic sketches in the exact sketch-rnn .npz format (for demos and tests)."""
    from .errors import UsageError
    from .sample import write_samples

    if dst.exists() and not dst.is_dir():
        raise UsageError("output must be a folder, but a file exists there", dst)
    try:
        paths = write_samples(dst, categories=categories, per_split=per_split, seed=seed)
    except ValueError as error:
        raise UsageError(str(error)) from None
    typer.echo(f"wrote {len(paths)} categories x 3 splits x {per_split} sketches to {dst}")


@app.command()
@reports_errors
def build(
    src: Path = typer.Argument(..., help="Folder of sketch-rnn .npz files (one category per file)."),
    dst: Path = typer.Argument(..., help="Output folder for shards, manifest.json and wids indexes."),
    procs: int = typer.Option(os.cpu_count() or 1, "--procs", "-p", help="Worker processes.", show_default="all cores"),
    size: int = typer.Option(256, "--size", help="Image width and height in pixels."),
    shard_size: int = typer.Option(
        10_000, "--shard-size", help="Most samples per shard; shards are cut to near-equal sizes."
    ),
    splits: Optional[str] = typer.Option(
        None, "--splits", help="Comma-separated splits to build, e.g. train,valid.", show_default="every split present"
    ),
    limit: Optional[int] = typer.Option(
        None, "--limit", help="At most N sketches per category and split (quick runs)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the cross-category shuffle (and random colours)."),
    shuffle: bool = typer.Option(
        True, "--shuffle/--no-shuffle", help="Mix categories across shards, or keep source order."
    ),
    on_error: str = typer.Option(
        "skip-sketches",
        "--on-error",
        help="skip-sketches: list invalid sketches and go on, stop on an unreadable file; "
        "skip: skip both; fail: stop at the first of either.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a build in DST made with other inputs or options."
    ),
    chunk_size: int = typer.Option(256, "--chunk-size", help="Samples per worker task (does not change the output)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Render every sketch in SRC into WebDataset tar shards in DST (resumes an interrupted build)."""
    from .pipeline import BuildOptions
    from .pipeline import build as run_build
    from .render import RenderOptions
    from .report import ProgressReporter, print_summary

    options = BuildOptions(
        render=RenderOptions(size=size),
        shard_size=shard_size,
        splits=tuple(s.strip() for s in splits.split(",") if s.strip()) if splits else None,
        limit=limit,
        seed=seed,
        shuffle=shuffle,
        on_error=on_error,
    )
    with ProgressReporter(enabled=progress) as reporter:
        result = run_build(
            src, dst, options, procs=procs, chunk_size=chunk_size, overwrite=overwrite, reporter=reporter
        )
    print_summary(result)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="shardgen")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
