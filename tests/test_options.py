"""The options, defined once: each check names the option as it is typed on the command line."""

from __future__ import annotations

import re

import pytest

from shardgen import pipeline
from shardgen.errors import UsageError
from shardgen.options import BuildOptions, DrawingOptions, RenderOptions, RunOptions


@pytest.mark.parametrize(
    "options, flag",
    [
        (RenderOptions(size=4), "--size"),
        (RenderOptions(padding=0.5), "--padding"),
        (RenderOptions(line_width=0), "--line-width"),
        (RenderOptions(channels=2), "--channels"),
        (RenderOptions(color="blue"), "--color"),
        (RenderOptions(format="gif"), "--format"),
        (RenderOptions(quality=0), "--quality"),
        (RenderOptions(png_compression=10), "--png-compression"),
        (RenderOptions(png_encoder="libpng"), "--png-encoder"),
        (DrawingOptions(countries=()), "--countries"),
        (BuildOptions(shard_size=0), "--shard-size"),
        (BuildOptions(limit=0), "--limit"),
        (BuildOptions(seed=-1), "--seed"),
        (BuildOptions(on_error="ignore"), "--on-error"),
        (BuildOptions(splits=("tset",)), "--splits"),
        (BuildOptions(render=RenderOptions(quality=101)), "--quality"),
        (BuildOptions(drawings=DrawingOptions(split_ratio=(0.5, 0.5))), "--split-ratio"),
        (RunOptions(procs=0), "--procs"),
        (RunOptions(procs=-2), "--procs"),
        (RunOptions(chunk_size=0), "--chunk-size"),
    ],
)
def test_an_out_of_range_option_is_a_usage_error_naming_it(options, flag):
    """Each check raises UsageError whose message starts with the option as typed on the command line."""
    with pytest.raises(UsageError, match=f"^{re.escape(flag)}[ :]"):
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


def test_only_drawing_options_that_are_used_enter_the_build_identity():
    """Defaults add nothing to the manifest, so .npz builds keep their identity."""
    assert DrawingOptions().to_dict() == {}
    assert DrawingOptions(countries=("US",)).to_dict() == {"countries": ["US"]}
