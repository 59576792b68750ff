"""Fixtures: synthetic sketch-rnn inputs made by shardgen itself (tests never read ../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardgen.sample import write_samples


@pytest.fixture(scope="session")
def sample_src(tmp_path_factory) -> Path:
    """Four categories, 60 sketches in each of train/valid/test."""
    src = tmp_path_factory.mktemp("npz")
    write_samples(src, categories=4, per_split=60, seed=1)
    return src
