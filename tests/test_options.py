"""The options, defined once: each field is a `shardgen build` option with its default; checks name the option."""

from __future__ import annotations

import dataclasses
import re

import pytest
import typer.main
from typer.testing import CliRunner

from shardgen import pipeline
from shardgen.cli import app
from shardgen.errors import UsageError
from shardgen.options import BuildOptions, DrawingOptions, RenderOptions, RunOptions
from tests.helpers import assert_one_line_error

PARAMS = {param.name: param for param in typer.main.get_command(app).commands["build"].params}


def leaf_fields(cls) -> list[dataclasses.Field]:
    """Every field of an options dataclass, with those of the options nested in it (render, drawings)."""
    nested = [f for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.default_factory)]
    own = [f for f in dataclasses.fields(cls) if f not in nested]
    return own + [leaf for f in nested for leaf in leaf_fields(f.default_factory)]


LEAVES = leaf_fields(BuildOptions) + leaf_fields(RunOptions)


def flag(name: str) -> str:
    """The option as a user types it: `--size` for the field `size`."""
    return PARAMS[name].opts[0]


@pytest.fixture
def build_call(monkeypatch):
    """Run `shardgen build SRC DST ARGS` with a stub library build; return the options it was given."""
    calls = []
    monkeypatch.setattr(pipeline, "build", lambda src, dst, options, reporter, **run: calls.append((options, run)))

    def call(*args: str) -> tuple[BuildOptions, RunOptions]:
        result = CliRunner().invoke(app, ["build", "src", "dst", "--quiet", *args])
        assert result.exit_code == 0, result.output
        options, run = calls[-1]
        return options, RunOptions(**run)

    return call


@pytest.mark.parametrize("field", LEAVES, ids=[f.name for f in LEAVES])
def test_every_option_field_is_a_build_option_with_its_default(field):
    """Each field of the build, render, drawing and run options is a `build` option with the field's default."""
    assert field.name in PARAMS, f"{field.name} has no `shardgen build` option"
    given_as_text = field.metadata["cli"].parse is not None  # left out: None, and the field keeps its default
    assert PARAMS[field.name].default == (None if given_as_text else field.default)


def test_build_without_options_passes_the_library_defaults(build_call):
    """`shardgen build SRC DST` hands the library exactly BuildOptions() and RunOptions()."""
    assert build_call() == (BuildOptions(), RunOptions())


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--splits", " train,,valid "], BuildOptions(splits=("train", "valid"))),
        (["--countries", "us, gb"], BuildOptions(drawings=DrawingOptions(countries=("US", "GB")))),
        (["--split-ratio", "0.9,0.05,0.05"], BuildOptions(drawings=DrawingOptions(split_ratio=(0.9, 0.05, 0.05)))),
        (["--no-antialias", "--with-strokes"], BuildOptions(render=RenderOptions(antialias=False, strokes=True))),
    ],
)
def test_options_given_as_text_are_parsed_into_the_fields(build_call, args, expected):
    """Comma-separated values become tuples (country codes upper-cased, ratios floats); flags set booleans."""
    assert build_call(*args)[0] == expected


def test_storage_options_are_parsed_into_a_dict(build_call):
    """Each --storage-option KEY=VALUE becomes one entry, its value parsed as JSON where it is JSON."""
    _, run = build_call("--storage-option", "anon=true", "--storage-option", "endpoint_url=http://x:9000")
    assert run.storage_options == {"anon": True, "endpoint_url": "http://x:9000"}


def test_a_split_ratio_that_is_not_numbers_is_a_one_line_usage_error():
    """--split-ratio a,b,c: one line naming the option and the three numbers it takes."""
    result = CliRunner().invoke(app, ["build", "src", "dst", "--split-ratio", "a,b,c"])
    assert_one_line_error(result, "--split-ratio takes three numbers TRAIN,VALID,TEST, got 'a,b,c'")


def test_the_png_encoder_option_stays_hidden():
    """--png-encoder (for scripts/bench only) is accepted but not listed in `build --help`."""
    result = CliRunner().invoke(app, ["build", "--help"])
    assert PARAMS["png_encoder"].hidden and "--png-encoder" not in result.output


@pytest.mark.parametrize(
    "options, field",
    [
        (RenderOptions(size=4), "size"),
        (RenderOptions(padding=0.5), "padding"),
        (RenderOptions(line_width=0), "line_width"),
        (RenderOptions(channels=2), "channels"),
        (RenderOptions(color="blue"), "color"),
        (RenderOptions(format="gif"), "format"),
        (RenderOptions(quality=0), "quality"),
        (RenderOptions(png_compression=10), "png_compression"),
        (RenderOptions(png_encoder="libpng"), "png_encoder"),
        (DrawingOptions(countries=()), "countries"),
        (BuildOptions(shard_size=0), "shard_size"),
        (BuildOptions(limit=0), "limit"),
        (BuildOptions(seed=-1), "seed"),
        (BuildOptions(on_error="ignore"), "on_error"),
        (BuildOptions(splits=("tset",)), "splits"),
        (BuildOptions(render=RenderOptions(quality=101)), "quality"),
        (BuildOptions(drawings=DrawingOptions(split_ratio=(0.5, 0.5))), "split_ratio"),
        (RunOptions(procs=0), "procs"),
        (RunOptions(procs=-2), "procs"),
        (RunOptions(chunk_size=0), "chunk_size"),
    ],
)
def test_an_out_of_range_option_is_a_usage_error_naming_it(options, field):
    """Each check raises UsageError whose message starts with the option as typed on the command line."""
    with pytest.raises(UsageError, match=f"^{re.escape(flag(field))}[ :]"):
        options.check()


@pytest.mark.parametrize("ratio", [(0.9, 0.05), (0.9, 0.2, 0.1), (1.2, -0.1, -0.1)])
def test_a_ratio_that_is_not_three_fractions_summing_to_one_is_refused(ratio):
    """--split-ratio must be TRAIN,VALID,TEST fractions adding up to 1."""
    with pytest.raises(UsageError, match="--split-ratio must be three fractions"):
        DrawingOptions(split_ratio=ratio).check()


@pytest.mark.parametrize("procs", [0, -1])
def test_the_library_build_refuses_procs_below_one(tmp_path, procs):
    """build(procs=0) is a UsageError, not every core (None is), and DST is not touched."""
    with pytest.raises(UsageError, match="--procs must be at least 1.*leave it out to use every core"):
        pipeline.build(tmp_path / "src", tmp_path / "out", procs=procs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["build", "src", "dst"], ["verify", "dst"]])
def test_every_command_refuses_procs_below_one_with_the_same_message(command):
    """`build --procs 0` and `verify --procs 0`: one line, one message, with the fix."""
    result = CliRunner().invoke(app, [*command, "--procs", "0"])
    assert_one_line_error(result, "--procs must be at least 1, got 0; leave it out to use every core")


def test_only_drawing_options_that_are_used_enter_the_build_identity():
    """Defaults add nothing to the manifest, so .npz builds keep their identity."""
    assert DrawingOptions().to_dict() == {}
    assert DrawingOptions(countries=("US",)).to_dict() == {"countries": ["US"]}
