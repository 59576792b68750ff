"""The command line: parse options, call one library function, report. Nothing else lives here.

Heavy modules (numpy, OpenCV, webdataset) are imported inside the commands so ``--help`` is quick.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import typer

from . import __version__, singlethread  # noqa: F401  (before numpy: this process renders nothing itself)
from .errors import ShardgenError
from .options import BuildOptions, Flag, RunOptions, check_procs, cli_fields, from_values

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
            _command_handles_sigint()
            return command(*args, **kwargs)
        except ShardgenError as error:
            typer.echo(f"shardgen: error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM (pipeline.Interrupted), or Ctrl-C elsewhere
            message = getattr(error, "message", "interrupted")
            typer.echo(f"shardgen: {message}", err=True)
            raise typer.Exit(getattr(error, "exit_code", 130)) from None

    return wrapper


def switch(*names: str, help: str) -> Any:
    """A flag that is off unless given; its help says so ("[default: (off)]")."""
    return typer.Option(False, *names, help=help, show_default="off")


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
    fit: bool = switch("--fit", help="npz only: fit the drawings into 0-255 like the QuickDraw formats (same points)."),
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
    written = _count(len(paths), "category", "categories")
    if file_format == "npz":
        typer.echo(f"wrote {written} x 3 splits x {_count(per_split, 'sketch')} to {dst}")
    else:
        typer.echo(f"wrote {written} x {_count(3 * per_split, 'drawing')} ({file_format}) to {dst}")


def with_options(*classes: type) -> Callable[[Callable], Callable]:
    """Give a command one option per field of the options ``classes`` (see ``options.Flag``), after
    its arguments; the command receives their values in ``**values``.

    typer reads a command's parameters with ``inspect.signature`` and their types with
    ``get_type_hints``, so both are set here.
    """

    def decorate(command: Callable) -> Callable:
        own = list(inspect.signature(command, eval_str=True).parameters.values())
        arguments = [p for p in own if isinstance(p.default, typer.models.ArgumentInfo)]
        derived = [_parameter(*spec) for cls in classes for spec in cli_fields(cls)]
        rest = [p for p in own[len(arguments) :] if p.kind is not p.VAR_KEYWORD]
        command.__signature__ = inspect.Signature([*arguments, *derived, *rest])  # type: ignore[attr-defined]
        command.__annotations__ = {**command.__annotations__, **{p.name: p.annotation for p in derived}}
        return command

    return decorate


def _parameter(name: str, hint: Any, default: Any, flag: Flag) -> inspect.Parameter:
    """The typer option of one options field; a field given as text reads text (None: the default)."""
    if flag.parse is not None:
        hint, default = (list[str] if flag.repeat else Optional[str]), None
    shown = "off" if default is False else flag.show_default  # as `switch` shows it
    option = typer.Option(
        default, *flag.names, help=flag.help, show_default=shown, metavar=flag.metavar, hidden=flag.hidden
    )
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=hint)


@app.command()
@reports_errors
@with_options(RunOptions, BuildOptions)
def build(
    src: str = typer.Argument(
        ...,
        help="Folder of sketch files, one category each: sketch-rnn .npz, QuickDraw .ndjson(.gz), .bin or .csv; "
        "or an fsspec URL (s3://bucket/npz).",
    ),
    dst: str = typer.Argument(
        ..., help="Output folder for shards, manifest.json and wids indexes, or an fsspec URL (s3://bucket/shards)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    dry_run: bool = switch(
        "--dry-run", help="Read the inputs and print the plan (counts, shards, size); render nothing."
    ),
    as_json: bool = switch("--json", help="Print the summary (or plan) as JSON on stdout, for scripts."),
    quiet: bool = switch("--quiet", "-q", help="Print only warnings and errors (no progress, no summary)."),
    verbose: bool = switch("--verbose", "-v", help="Also log each shard as it is written, with timings."),
    **values: Any,
) -> None:
    """Render every sketch in SRC into WebDataset tar shards in DST (resumes an interrupted build)."""
    from .dryrun import plan_build
    from .errors import UsageError
    from .location import is_url
    from .pipeline import build as run_build
    from .report import NORMAL, QUIET, VERBOSE, ProgressReporter, print_plan, print_summary

    options, run = from_values(BuildOptions, values), from_values(RunOptions, values)
    run.check()
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
        result = run_build(src, dst, options, reporter=reporter, **asdict(run))
    if as_json or not quiet:
        print_summary(result, as_json=as_json)


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
    typer.echo(f"wrote {_count(shown, f'{split} sample')} to {output}")


@app.command()
@reports_errors
def verify(
    dst: Path = typer.Argument(..., help="A build's output folder (holding manifest.json)."),
    procs: int = typer.Option(os.cpu_count() or 1, "--procs", "-p", help="Worker processes.", show_default="all cores"),
) -> None:
    """Read every shard in DST and check it against the manifest; exit 0 only if all is well."""
    from .errors import VerifyError
    from .verify import verify as run_verify

    check_procs(procs)
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


class _EarlyInterrupt(BaseException):
    """A Ctrl-C that came before the command's own code ran: see :class:`_EarlySigint`."""


class _EarlySigint:
    """SIGINT's handler while the command line starts (the fork server, typer parsing the options, a
    build's imports): it only notes the signal; the command then stops before it begins, and
    :func:`main` prints one line.

    A ``KeyboardInterrupt`` raised there would land wherever the main thread is: inside an import,
    where a weakref callback swallows it and may keep the import lock (the build then hangs on its
    first import in a thread); in a ``__set_name__``, which turns it into a ``RuntimeError``; or in
    typer, which turns it into exit 130 without a word (older versions: "Aborted!", exit 1).
    """

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = True

    def check(self) -> None:
        if self.received:
            raise _EarlyInterrupt


def _command_handles_sigint() -> None:
    """From here on a Ctrl-C is the command's own ``KeyboardInterrupt``; stop now if one came before."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, _EarlySigint):
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # one meanwhile waits for the new handler
        try:
            handler.check()
            signal.signal(signal.SIGINT, signal.default_int_handler)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def main() -> None:
    """Console-script entry point (through ``shardgen.__main__``): runs one command, after which the
    process ends. A Ctrl-C before the command's own code runs ends it with one line and exit 130."""
    early = _EarlySigint()
    try:
        # Signal handlers are the main thread's; SIGINT may be ignored (nohup); Windows has no signal masks.
        in_charge = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
        if in_charge and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, early)
        if starts_a_local_build(sys.argv[1:]):
            from .executor import start_fork_server

            # Now, before typer parses the options (~0.1 s: it loads pydantic): the fork server's own
            # ~0.2 s of imports (numpy, OpenCV) then overlap with ours instead of following them.
            start_fork_server()
            early.check()
            # The build's own modules (numpy, OpenCV too) while a Ctrl-C only is noted (see _EarlySigint).
            from . import dryrun, pipeline, report  # noqa: F401
        app(prog_name="shardgen")
    except BaseException as error:
        if not (early.received or isinstance(error, KeyboardInterrupt)):
            raise
        typer.echo("shardgen: interrupted", err=True)
        raise SystemExit(130) from None
    finally:
        # No command took over (--help): Python's handler back, for a caller in this process (tests).
        # After a Ctrl-C the process ends, and the handler stays to note a repeat.
        if not early.received and signal.getsignal(signal.SIGINT) is early:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        # The process ends here, and Python's last garbage collection would walk every object the
        # command made (pydantic's schemas, numpy, OpenCV): ~0.05 s after a build's summary is out
        # (measured from its last line to the end of its output pipe). Frozen objects are skipped.
        # stdout and stderr are still flushed and atexit handlers still run; only cycles go
        # uncollected, and every file a command writes is closed (with-blocks) before this point.
        gc.freeze()


def _count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 sketch``, ``40,000 sketches``: a number of things, as a sentence gives it."""
    plural = plural or noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")
    return f"{number:,} {noun if number == 1 else plural}"


def starts_a_local_build(args: list[str]) -> bool:
    """Whether these arguments run ``build`` on local worker processes (not a plan, help or a cluster)."""
    flags = {arg.split("=", 1)[0] for arg in args}
    return args[:1] == ["build"] and not flags & {"--help", "--dry-run", "--scheduler"}
